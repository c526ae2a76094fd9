"""Misconfiguration is a clear error: ImproperlyConfigured when a view is
decorated or a mixin view class is defined, TypeError for a misplaced
decorator, and system checks for the IDEMPOTENCY setting."""

import datetime as dt
import functools
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from django.urls import include, path
from django.views import View
from pytest_django import Settings
from rest_framework import generics
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from django_idempotency import IdempotencyMixin, idempotent
from django_idempotency.checks import check_protected_views, check_settings
from tests.factories import api_client
from tests.helpers import post
from tests.testapp.models import Payment

BAD_TYPES = [
    pytest.param({"header": "Bad Header"}, "header", id="header with a space"),
    pytest.param({"header": 42}, "header", id="header not a str"),
    pytest.param({"required": "yes"}, "required", id="required not bool"),
    pytest.param({"methods": "POST"}, "methods", id="methods a bare str"),
    pytest.param({"methods": ["GET", "POST"]}, "methods", id="methods with a safe method"),
    pytest.param({"methods": []}, "methods", id="methods empty: no key honoured"),
    pytest.param({"key_min_length": 0}, "key_min_length", id="key_min_length zero"),
    pytest.param({"key_max_length": "255"}, "key_max_length", id="key_max_length str"),
    pytest.param({"key_max_length": 1025}, "key_max_length", id="key_max_length over 1024"),
    pytest.param({"key_pattern": "[unclosed"}, "key_pattern", id="key_pattern invalid regex"),
    pytest.param({"key_pattern": 5}, "key_pattern", id="key_pattern not str"),
    pytest.param({"ttl": "24h"}, "ttl", id="ttl str"),
    pytest.param({"ttl": dt.timedelta(0)}, "ttl", id="ttl zero"),
    pytest.param({"ttl": dt.timedelta.max}, "ttl", id="ttl past year 9999"),
    pytest.param({"ttl": 10**12}, "ttl", id="ttl in seconds past year 9999"),
    pytest.param({"ttl": float("inf")}, "ttl", id="ttl infinite"),
    pytest.param({"lock_timeout": float("nan")}, "lock_timeout", id="lock_timeout NaN"),
    pytest.param({"scope": "no.such.module.func"}, "scope", id="scope bad dotted path"),
    pytest.param({"scope": 3}, "scope", id="scope not callable"),
    pytest.param({"scope": lambda: "x"}, "scope", id="scope taking no request"),
    pytest.param({"fingerprint": lambda a, b: "x"}, "fingerprint", id="fingerprint taking two"),
    pytest.param({"per_endpoint": 1}, "per_endpoint", id="per_endpoint int"),
    pytest.param({"fingerprint": "nope"}, "fingerprint", id="fingerprint bad path"),
    pytest.param({"replay_status": 99}, "replay_status", id="replay_status not a status"),
    pytest.param({"replayed_header": True}, "replayed_header", id="replayed_header bool"),
    pytest.param({"request_id_header": "a b"}, "request_id_header", id="request_id bad name"),
    pytest.param({"mismatch_status": 500}, "mismatch_status", id="mismatch_status not 4xx"),
    pytest.param({"store_server_errors": None}, "store_server_errors", id="store_5xx None"),
    pytest.param({"max_response_bytes": -1}, "max_response_bytes", id="max_bytes negative"),
    pytest.param({"lock_timeout": -5}, "lock_timeout", id="lock_timeout negative"),
    pytest.param({"atomic": "true"}, "atomic", id="atomic str"),
]

IMPOSSIBLE = [
    pytest.param({"key_min_length": 10, "key_max_length": 5}, "key_min_length", id="min > max"),
    pytest.param(
        {"lock_timeout": dt.timedelta(minutes=5), "ttl": dt.timedelta(minutes=1)},
        "lock_timeout",
        id="lock_timeout > ttl",
    ),
    pytest.param({"lock_timeout": dt.timedelta(days=2)}, "lock_timeout", id="lock > default ttl"),
    pytest.param({"replayed_header": "Idempotency-Key"}, "replayed_header", id="header clash"),
]


def make_mixin_view(options: dict[str, Any]) -> type:
    return type(
        "BadView", (IdempotencyMixin, generics.CreateAPIView), {"idempotency_options": options}
    )


# Per-view options -------------------------------------------------------------


def test_mistyped_option_name_fails_at_decoration() -> None:
    with pytest.raises(ImproperlyConfigured) as exc:
        idempotent(tll=dt.timedelta(hours=1))  # type: ignore[call-overload]  # the typo under test

    message = str(exc.value)
    assert "'tll'" in message
    assert "ttl" in message.replace("'tll'", "")  # the valid names are listed


def test_mistyped_option_name_fails_on_mixin_subclass_creation() -> None:
    with pytest.raises(ImproperlyConfigured, match="'requird'"):
        make_mixin_view({"requird": True})


def test_upper_case_option_name_is_refused_per_view() -> None:
    with pytest.raises(ImproperlyConfigured, match="'TTL'"):
        idempotent(TTL=60)  # type: ignore[call-overload]  # the typo under test


@pytest.mark.parametrize(("options", "name"), BAD_TYPES)
def test_wrong_type_fails_at_decoration(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"'{name}'"):
        idempotent(**options)


@pytest.mark.parametrize(("options", "name"), BAD_TYPES)
def test_wrong_type_fails_on_mixin_subclass_creation(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"'{name}'"):
        make_mixin_view(options)


@pytest.mark.parametrize(("options", "name"), IMPOSSIBLE)
def test_impossible_combination_fails_at_decoration(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"'{name}'"):
        idempotent(**options)


@pytest.mark.parametrize(("options", "name"), IMPOSSIBLE)
def test_impossible_combination_fails_on_mixin_subclass_creation(
    options: dict[str, Any], name: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"'{name}'"):
        make_mixin_view(options)


def test_good_options_are_accepted() -> None:
    # Numbers of seconds, timedeltas, lists of methods in any case, None values.
    idempotent(
        ttl=3600,
        lock_timeout=dt.timedelta(seconds=30),
        methods=["post", "Put"],
        replayed_header=None,
        request_id_header=None,
        scope="tests.testapp.views.tenant_scope",
        key_min_length=36,
        key_max_length=1024,
    )
    make_mixin_view({"required": True, "key_pattern": r"[0-9a-f-]{36}"})


# Decorator order --------------------------------------------------------------


def test_idempotent_above_api_view_is_a_type_error_showing_the_right_order() -> None:
    with pytest.raises(TypeError) as exc:

        @idempotent
        @api_view(["POST"])
        def create_letter(request: Request) -> Any: ...

    message = str(exc.value)
    assert "below @api_view" in message
    assert "def create_letter(request)" in message
    assert message.index("@api_view([") < message.index("@idempotent(")


def test_idempotent_with_options_above_api_view_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="below @api_view"):

        @idempotent(required=True)
        @api_view(["POST"])
        def create_letter(request: Request) -> Any: ...


def test_idempotent_on_a_view_class_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="IdempotencyMixin"):

        @idempotent
        class LetterView(APIView):
            pass


def test_idempotent_on_as_view_is_a_type_error() -> None:
    class LetterView(APIView):
        pass

    with pytest.raises(TypeError, match="below @api_view"):
        idempotent(LetterView.as_view())


@pytest.mark.django_db
def test_idempotent_on_a_plain_django_view_is_improperly_configured_not_a_type_error(
    rf: RequestFactory,
) -> None:
    @idempotent
    def plain(request: HttpRequest) -> None: ...

    with pytest.raises(ImproperlyConfigured, match="Django REST Framework views only"):
        plain(rf.post("/plain/", HTTP_IDEMPOTENCY_KEY="k"))


# A URLconf with what check E006 must find: @idempotent without DRF around it.
@idempotent
def plain_function_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=201)


class PlainClassView(View):
    @idempotent
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(status=201)


@api_view(["POST"])
@idempotent
def drf_function_view(request: Request) -> Response:
    return Response(status=201)


class DrfClassView(IdempotencyMixin, APIView):
    def post(self, request: Request) -> Response:
        return Response(status=201)


urlpatterns = [
    path("plain/", plain_function_view),
    path("partial/", functools.partial(plain_function_view)),
    path("drf-partial/", functools.partial(drf_function_view)),
    path("nested/", include([path("plain-class/", PlainClassView.as_view())])),
    path("drf/", drf_function_view),
    path("drf-class/", DrfClassView.as_view()),
]


@override_settings(ROOT_URLCONF=__name__)
def test_e006_idempotent_on_plain_django_views_is_reported_at_startup() -> None:
    messages = [m for m in check_protected_views() if m.id == "django_idempotency.E006"]
    found = sorted(m.msg for m in messages)
    assert len(found) == 3
    assert "'nested/plain-class/' (PlainClassView)" in found[0]
    assert "'partial/' (plain_function_view)" in found[1]
    assert "'plain/' (plain_function_view)" in found[2]
    assert all("@api_view" in (m.hint or "") for m in messages)  # says how to fix it
    with pytest.raises(SystemCheckError, match=r"django_idempotency\.E006"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_e006_is_silent_for_the_drf_views_of_a_project() -> None:
    # tests/urls.py: decorated @api_view functions, mixin views, viewsets, actions.
    assert check_protected_views() == []


# Settings -------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(IDEMPOTENCY={"TLL": 60})
def test_mistyped_setting_fails_loudly_at_the_first_request(client: APIClient) -> None:
    with pytest.raises(ImproperlyConfigured, match="'TLL'"):
        post(client, "/function/", key="k")
    assert Payment.objects.count() == 0


# System checks ------------------------------------------------------------------


def ids(messages: list[CheckMessage]) -> list[str]:
    return sorted(m.id for m in messages if m.id and m.id.startswith("django_idempotency."))


def test_default_configuration_passes_the_checks() -> None:
    assert ids(check_settings()) == []
    call_command("check", stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"TLL": 60}, id="mistyped name"),
        pytest.param({"ttl": 60}, id="lower-case name"),
        pytest.param({"TTL": "1 day"}, id="wrong type"),
        pytest.param({"TTL": float("inf")}, id="infinite"),
        pytest.param({"TTL": dt.timedelta(days=365 * 8000)}, id="past year 9999"),
        pytest.param({"KEY_MIN_LENGTH": 10, "KEY_MAX_LENGTH": 5}, id="min > max"),
        pytest.param({"LOCK_TIMEOUT": 120, "TTL": 60}, id="lock_timeout > ttl"),
        pytest.param({"LOCK": "redis"}, id="unknown lock"),
        pytest.param({"DATABASE": ""}, id="empty alias"),
        pytest.param({"METHODS": []}, id="no method"),
        pytest.param({"SCOPE": lambda: "tenant"}, id="scope taking no request"),
        pytest.param({"FINGERPRINT": lambda request, view: "x"}, id="fingerprint taking two"),
        pytest.param(["TTL", 60], id="not a dict"),
    ],
)
def test_e001_invalid_setting(setting: Any) -> None:
    with override_settings(IDEMPOTENCY=setting):
        messages = check_settings()
        assert ids(messages) == ["django_idempotency.E001"]
        assert messages[0].hint
        with pytest.raises(SystemCheckError, match=r"django_idempotency\.E001"):
            call_command("check", stdout=StringIO(), stderr=StringIO())


def test_e001_message_names_the_option() -> None:
    with override_settings(IDEMPOTENCY={"TTL": "1 day"}):
        (message,) = check_settings()
    assert "TTL" in message.msg
    # A wrong value is not a wrong name: no list of names to wade through.
    assert "KEY_PATTERN" not in message.msg + (message.hint or "")


def test_e001_lists_every_valid_name_for_an_unknown_one() -> None:
    with override_settings(IDEMPOTENCY={"DATABSE": "records"}):
        (message,) = check_settings()
    assert "'DATABSE'" in message.msg
    for name in ("DATABASE", "LOCK", "CACHE_ALIAS", "TTL", "KEY_PATTERN"):
        assert name in message.msg


@override_settings(IDEMPOTENCY={"DATABASE": "no-such-alias"})
def test_e002_database_alias_not_in_databases() -> None:
    assert ids(check_settings()) == ["django_idempotency.E002"]
    with pytest.raises(SystemCheckError, match=r"django_idempotency\.E002"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_e003_unsupported_database_engine(settings: Settings) -> None:
    databases = {
        **settings.DATABASES,
        "oracle-records": {"ENGINE": "django.db.backends.oracle", "NAME": "records"},
    }
    # Only the check reads this copy; the connections in use are untouched.
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases, IDEMPOTENCY={"DATABASE": "oracle-records"}),
    ):
        assert ids(run_checks(tags=["compatibility"])) == ["django_idempotency.E003"]


@override_settings(IDEMPOTENCY={"LOCK": "cache", "CACHE_ALIAS": "locks"})
def test_e004_cache_alias_not_in_caches() -> None:
    assert ids(check_settings()) == ["django_idempotency.E004"]
    with pytest.raises(SystemCheckError, match=r"django_idempotency\.E004"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


@override_settings(
    IDEMPOTENCY={"LOCK": "cache"},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
)
def test_e005_cache_lock_needs_redis() -> None:
    messages = check_settings()
    assert ids(messages) == ["django_idempotency.E005"]
    hint = messages[0].hint or ""
    assert "django-redis" in hint or "django_redis" in hint
    with pytest.raises(SystemCheckError, match=r"django_idempotency\.E005"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_cache_lock_with_redis_passes(settings: Settings) -> None:
    caches = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": settings.REDIS_URL}
    }
    with override_settings(IDEMPOTENCY={"LOCK": "cache"}, CACHES=caches):
        assert ids(check_settings()) == []


def test_w001_rest_framework_not_installed(settings: Settings) -> None:
    apps = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]
    with override_settings(INSTALLED_APPS=apps):
        assert ids(check_settings()) == ["django_idempotency.W001"]
        out, err = StringIO(), StringIO()
        call_command("check", stdout=out, stderr=err)  # a warning does not fail
        assert "django_idempotency.W001" in out.getvalue() + err.getvalue()


# The option names are the public contract ---------------------------------------

ISSUE_OPTION_NAMES = {
    "header",
    "required",
    "methods",
    "key_min_length",
    "key_max_length",
    "key_pattern",
    "ttl",
    "scope",
    "per_endpoint",
    "fingerprint",
    "replay_status",
    "replayed_header",
    "request_id_header",
    "expiry_header",  # issue 12 item 3
    "mismatch_status",
    "store_server_errors",
    "max_response_bytes",
    "lock_timeout",
    "wait",  # issue 12 item 1
    "atomic",
}


def test_option_names_are_those_of_the_option_table() -> None:
    from django_idempotency.options import SPECS

    assert {spec.name for spec in SPECS} == ISSUE_OPTION_NAMES


def test_every_option_is_a_decorator_keyword_and_an_upper_case_setting() -> None:
    from django_idempotency.options import SPECS

    defaults = {spec.name: spec.default for spec in SPECS}
    idempotent(**defaults)
    make_mixin_view(defaults)
    with override_settings(IDEMPOTENCY={name.upper(): value for name, value in defaults.items()}):
        assert ids(check_settings()) == []


def test_e001_is_reported_by_check_in_a_project_with_decorated_views(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    # A real project: the URLconf (full of decorated views) is imported by the
    # URL checks, after the setting's own check has had its say.
    (tmp_path / "typo_settings.py").write_text(
        "from tests.settings import *\nIDEMPOTENCY = {'REQUIERD': True}\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=root,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "typo_settings",
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "django_idempotency.E001" in result.stderr
    assert "REQUIERD" in result.stderr and "REQUIRED" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_still_fails_the_first_request_clearly() -> None:

    client = api_client()
    with (
        override_settings(IDEMPOTENCY={"REQUIERD": True}),
        pytest.raises(ImproperlyConfigured, match="REQUIERD"),
    ):
        client.post("/function/", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
