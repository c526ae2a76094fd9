"""The OpenAPI schema (drf-spectacular) documents each protected operation from
its view's options, with no annotation on the views.

The sample project is started as it runs for `make demo` (its own settings,
``runserver``), and its served schema is read operation by operation.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.test import modify_settings, override_settings
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from openapi_spec_validator import validate
from rest_framework import generics, serializers

from django_idempotency import IdempotencyMixin
from django_idempotency.checks import check_schema_class
from django_idempotency.exceptions import KeyInvalid
from django_idempotency.keys import parse_key
from django_idempotency.openapi import (
    IdempotencySchemaMixin,
    _key_parameter,
    key_schema,
    problem_codes,
)
from django_idempotency.options import Options, combine, validate_options
from sample_project.demo.views import ietf, lithic, orzcash, stannp, txcloud

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"
OUR_SCHEMA = "django_idempotency.openapi.AutoSchema"

ALL_400 = [
    "idempotency_key_invalid",
    "idempotency_key_anonymous",
    "idempotency_request_unrecordable",
]
IN_PROGRESS = "idempotency_request_in_progress"
REUSED = "idempotency_key_reused"
UNAVAILABLE = "idempotency_unavailable"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=(2, 30), **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The sample project under runserver, which serves the static files
    (the sidecar's Swagger UI assets) itself, as in `make demo`."""
    tmp = tmp_path_factory.mktemp("openapi")
    port = _free_port()
    log = tmp / "runserver.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sample_project.settings",
        "DEMO_DATABASE": "sqlite",
        "DEMO_SQLITE_PATH": str(tmp / "demo.sqlite3"),
    }
    env.pop("DEMO_REDIS_URL", None)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT / "sample_project",
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"runserver exited:\n{log.read_text()}")
            try:
                server.get("/api/schema/")
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"runserver did not start:\n{log.read_text()}") from None
                time.sleep(0.1)  # polling for the port, not waiting for time to pass
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def schema(sample: Server) -> dict[str, Any]:
    response = sample.get("/api/schema/", params={"format": "json"})
    assert response.status_code == 200, sample.log.read_text()
    return response.json()  # type: ignore[no-any-return]


def _operation(schema: dict[str, Any], method: str, route: str) -> dict[str, Any]:
    return schema["paths"][route][method.lower()]  # type: ignore[no-any-return]


def _header_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}


def _problem_codes_by_status(operation: dict[str, Any]) -> dict[str, list[str]]:
    return {
        status: list(response["content"][PROBLEM]["examples"])
        for status, response in operation["responses"].items()
        if PROBLEM in response.get("content", {})
    }


def _options(raw: dict[str, Any]) -> Options:
    return combine(validate_options(raw))


# (method, route, options of the view, key header, required, min, max)
PROTECTED = [
    ("POST", "/ietf/payments/", ietf.OPTIONS, "Idempotency-Key", False, 1, 255),
    ("PATCH", "/ietf/payments/{id}/", ietf.OPTIONS, "Idempotency-Key", False, 1, 255),
    ("POST", "/ietf/payments/{id}/refund/", ietf.OPTIONS, "Idempotency-Key", False, 1, 255),
    ("POST", "/lithic/cards/", lithic.OPTIONS, "Idempotency-Key", False, 1, 255),
    ("POST", "/lithic/cards/{id}/renew/", lithic.OPTIONS, "Idempotency-Key", False, 1, 255),
    ("POST", "/txcloud/identity/verify", txcloud.OPTIONS, "Idempotency-Key", False, 10, 255),
    ("POST", "/txcloud/identity/sessions", txcloud.OPTIONS, "Idempotency-Key", False, 10, 255),
    ("POST", "/stannp/letters/", stannp.OPTIONS, "X-Idempotency-Key", False, 10, 1024),
    ("POST", "/orzcash/transfers/", orzcash.OPTIONS, "Idempotency-Key", True, 1, 255),
]

UNPROTECTED = [
    # Not protected at all.
    ("GET", "/api/schema/"),
    # Methods outside the view's `methods`.
    ("GET", "/ietf/payments/"),
    ("PUT", "/ietf/payments/{id}/"),
    ("DELETE", "/ietf/payments/{id}/"),
    ("GET", "/lithic/cards/"),
    ("PATCH", "/lithic/cards/{id}/"),
    ("PUT", "/lithic/cards/{id}/"),
    ("GET", "/txcloud/identity/checks/{id}"),
    ("DELETE", "/txcloud/identity/checks/{id}"),
    ("GET", "/stannp/letters/"),
    ("GET", "/orzcash/transfers/"),
]


def test_the_served_schema_is_valid_openapi(schema: dict[str, Any]) -> None:
    validate(schema)


@pytest.mark.parametrize(("method", "route", "raw", "header", "required", "low", "high"), PROTECTED)
def test_a_protected_operation_documents_its_own_key_header(
    schema: dict[str, Any],
    method: str,
    route: str,
    raw: Any,
    header: str,
    required: bool,
    low: int,
    high: int,
) -> None:
    parameter = _header_parameters(_operation(schema, method, route))[header]
    assert parameter["required"] is required
    assert parameter["schema"]["minLength"] == low
    assert parameter["schema"]["maxLength"] == high
    assert parameter["schema"]["pattern"] == f"^(?:{_options(raw).key_pattern.pattern})$"


def test_the_stannp_operation_documents_only_its_own_header_name(schema: dict[str, Any]) -> None:
    headers = _header_parameters(_operation(schema, "POST", "/stannp/letters/"))
    assert "Idempotency-Key" not in headers
    assert "X-Idempotency-Key" in headers


KEYS = [
    "",
    "a",
    "a" * 9,
    "a" * 10,
    "0123456789_-",
    "8e03978e-40d5-43e8-bc93-6894a57f9324",
    "8E03978E-40D5-43E8-BC93-6894A57F9324",
    "with space inside",
    "comma,inside",
    'quote"inside',
    "k" * 255,
    "k" * 256,
    "k" * 1024,
    "k" * 1025,
    "café-1234567",
    "tab\tinside12",
    "!#$%&'*+-.^_`|~0",
]


@pytest.mark.parametrize(("method", "route", "raw", "header", "required", "low", "high"), PROTECTED)
def test_a_client_that_checks_keys_against_the_schema_sends_exactly_the_keys_the_view_accepts(
    schema: dict[str, Any],
    method: str,
    route: str,
    raw: Any,
    header: str,
    required: bool,
    low: int,
    high: int,
) -> None:
    key_schema = _header_parameters(_operation(schema, method, route))[header]["schema"]
    options = _options(raw)
    for key in KEYS:
        # The schema's pattern is ECMA-262; these ones read the same in Python.
        by_schema = (
            key_schema["minLength"] <= len(key) <= key_schema["maxLength"]
            and re.search(key_schema["pattern"], key) is not None
            and key.isascii()
            and key.isprintable()
        )
        try:
            accepted = parse_key(key, options) == key
        except KeyInvalid:
            accepted = False
        assert by_schema == accepted, key


@pytest.mark.parametrize(("method", "route", "raw", "header", "required", "low", "high"), PROTECTED)
def test_a_protected_operation_documents_the_problems_the_app_answers(
    schema: dict[str, Any],
    method: str,
    route: str,
    raw: Any,
    header: str,
    required: bool,
    low: int,
    high: int,
) -> None:
    options = _options(raw)
    by_status = _problem_codes_by_status(_operation(schema, method, route))
    expected: dict[str, list[str]] = {
        "400": (["idempotency_key_missing"] if options.required else []) + ALL_400,
        "409": [IN_PROGRESS],
        "503": [UNAVAILABLE],
    }
    expected.setdefault(str(options.mismatch_status), []).insert(0, REUSED)
    assert by_status == expected


def test_txcloud_answers_a_reused_key_with_409_next_to_the_request_in_progress(
    schema: dict[str, Any],
) -> None:
    operation = _operation(schema, "POST", "/txcloud/identity/verify")
    assert _problem_codes_by_status(operation)["409"] == [REUSED, IN_PROGRESS]
    assert "422" not in operation["responses"]


@pytest.mark.parametrize(("method", "route", "raw", "header", "required", "low", "high"), PROTECTED)
def test_problem_responses_carry_problem_documents_and_their_headers(
    schema: dict[str, Any],
    method: str,
    route: str,
    raw: Any,
    header: str,
    required: bool,
    low: int,
    high: int,
) -> None:
    operation = _operation(schema, method, route)
    for status in _problem_codes_by_status(operation):
        response = operation["responses"][status]
        content = response["content"][PROBLEM]
        assert content["schema"] == {"$ref": "#/components/schemas/IdempotencyProblem"}
        for code, example in content["examples"].items():
            assert example["value"]["code"] == code
            assert example["value"]["status"] == int(status)
        headers = response["headers"]
        assert "X-Request-Id" in headers
        # Retry-After is sent with the in-progress 409 and the 503, nothing else.
        assert ("Retry-After" in headers) == (status in ("409", "503")), status


@pytest.mark.parametrize(("method", "route", "raw", "header", "required", "low", "high"), PROTECTED)
def test_the_views_own_responses_document_the_replay_and_request_id_headers(
    schema: dict[str, Any],
    method: str,
    route: str,
    raw: Any,
    header: str,
    required: bool,
    low: int,
    high: int,
) -> None:
    responses = _operation(schema, method, route)["responses"]
    successes = [status for status in responses if status.startswith("2")]
    assert successes
    for status in successes:
        headers = responses[status]["headers"]
        assert headers["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
        assert "X-Request-Id" in headers


def test_an_expiry_header_is_documented_on_the_views_own_responses(schema: dict[str, Any]) -> None:
    # The checkout sets expiry_header; the other groups do not.
    responses = _operation(schema, "post", "/checkout/payments/")["responses"]
    successes = [status for status in responses if status.startswith("2")]
    assert successes
    for status in successes:
        header = responses[status]["headers"]["Idempotency-Key-Expires"]
        assert header["schema"] == {"type": "string"}
    others = _operation(schema, "post", "/ietf/payments/")["responses"]["201"]["headers"]
    assert "Idempotency-Key-Expires" not in others


def test_stannp_documents_its_replays_under_409(schema: dict[str, Any]) -> None:
    replay = _operation(schema, "POST", "/stannp/letters/")["responses"]["409"]
    assert "Idempotent-Replayed" in replay["headers"]
    assert "replay" in replay["description"].lower()


@pytest.mark.parametrize(("method", "route"), UNPROTECTED)
def test_an_unprotected_operation_gets_nothing(
    schema: dict[str, Any], method: str, route: str
) -> None:
    operation = _operation(schema, method, route)
    assert not {"Idempotency-Key", "X-Idempotency-Key"} & set(_header_parameters(operation))
    for response in operation["responses"].values():
        assert PROBLEM not in response.get("content", {})
        assert not {"Idempotent-Replayed", "X-Request-Id", "Retry-After"} & set(
            response.get("headers", {})
        )


def test_the_code_enum_is_the_list_of_docs_errors(schema: dict[str, Any]) -> None:
    documented = re.findall(r"^## `(\w+)`", (ROOT / "docs" / "errors.md").read_text(), re.M)
    enum = schema["components"]["schemas"]["IdempotencyProblemCode"]["enum"]
    assert sorted(documented) == enum == problem_codes()
    problem = schema["components"]["schemas"]["IdempotencyProblem"]
    assert problem["properties"]["code"] == {"$ref": "#/components/schemas/IdempotencyProblemCode"}


def test_no_operation_is_described_by_the_mixins_docstring(schema: dict[str, Any]) -> None:
    mixin_doc = inspect.cleandoc(IdempotencyMixin.__doc__ or "")
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description", "") != mixin_doc, (method, route)


class _LinksAndScripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_the_swagger_ui_is_served_from_local_assets_only(sample: Server) -> None:
    page = sample.get("/api/docs/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert not re.search(r"https?://", page.text), "the page refers to another host"
    parser = _LinksAndScripts()
    parser.feed(page.text)
    assets = [url for url in parser.urls if "swagger-ui" in url]
    assert len(assets) >= 3, parser.urls  # the CSS, the bundle, the standalone preset
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
    for url in assets:
        assert url.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/"), url
        asset = sample.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "/api/schema/" in page.text


def test_the_index_links_the_schema_and_the_swagger_ui(sample: Server) -> None:
    index = sample.get("/", headers={"Accept": "application/json"}).json()
    assert index["openapi"] == {"schema": "/api/schema/", "swagger_ui": "/api/docs/"}


# In-process generation, for what the sample project cannot show.


class _Body(serializers.Serializer[Any]):
    amount = serializers.IntegerField()


class _Undocumented(IdempotencyMixin, generics.CreateAPIView[Any]):
    serializer_class = _Body


class _DocumentedBase(generics.CreateAPIView[Any]):
    """Create a thing; the base class says so."""

    serializer_class = _Body


class _InheritsItsDoc(IdempotencyMixin, _DocumentedBase):
    pass


def _generate(schema_class: str) -> dict[str, Any]:
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_SCHEMA_CLASS": schema_class}
    with override_settings(REST_FRAMEWORK=rest_framework):
        generator = SchemaGenerator(  # type: ignore[no-untyped-call]  # as in openapi.py
            patterns=[
                path("undocumented/", _Undocumented.as_view()),
                path("inherits/", _InheritsItsDoc.as_view()),
            ]
        )
        return generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call,no-any-return]


def test_a_view_without_a_docstring_gets_no_description_but_the_mixin_keeps_its_own() -> None:
    mixin_doc = inspect.cleandoc(IdempotencyMixin.__doc__ or "")
    # What drf-spectacular alone does: the mixin's docstring for the operation.
    plain = _generate("drf_spectacular.openapi.AutoSchema")
    assert plain["paths"]["/undocumented/"]["post"]["description"] == mixin_doc

    ours = _generate(OUR_SCHEMA)
    assert "description" not in ours["paths"]["/undocumented/"]["post"]
    assert ours["paths"]["/inherits/"]["post"]["description"] == (
        "Create a thing; the base class says so."
    )
    assert inspect.getdoc(IdempotencyMixin) == mixin_doc
    assert "Idempotency-Key" in _header_parameters(ours["paths"]["/undocumented/"]["post"])


def _spectacular_checked(schema_class: str) -> list[str]:
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_SCHEMA_CLASS": schema_class}
    with (
        modify_settings(INSTALLED_APPS={"append": "drf_spectacular"}),
        override_settings(REST_FRAMEWORK=rest_framework),
    ):
        return [str(message.id) for message in check_schema_class()]


class ProjectSpectacularSchema(IdempotencySchemaMixin, SpectacularAutoSchema):
    """A project's own AutoSchema, with the app's mixin first."""


def test_the_check_warns_when_drf_spectacular_runs_without_the_apps_schema_class() -> None:
    assert _spectacular_checked("drf_spectacular.openapi.AutoSchema") == ["django_idempotency.W004"]
    assert _spectacular_checked(OUR_SCHEMA) == []
    assert _spectacular_checked(f"{__name__}.ProjectSpectacularSchema") == []


def test_the_check_is_silent_without_drf_spectacular_in_installed_apps() -> None:
    rest_framework = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    }
    with (
        modify_settings(INSTALLED_APPS={"remove": "drf_spectacular"}),
        override_settings(REST_FRAMEWORK=rest_framework),
    ):
        assert check_schema_class() == []


def test_the_module_imports_without_drf_spectacular() -> None:
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "drf_spectacular":
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, Missing())
        import django
        django.setup()
        import django_idempotency.openapi as openapi
        print(hasattr(openapi, "AutoSchema"), len(openapi.problem_codes()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", str(len(problem_codes()))]


# Patterns only published where an ECMA-262 engine reads them as Python does ---------

NOT_PORTABLE = [
    r"[a-z]++",  # possessive: a syntax error in ECMAScript
    r"a{,3}",  # 0 to 3 in Python, a literal in ECMAScript
    r"\N{LATIN SMALL LETTER A}",
    r"\101",  # octal
    r"[a-z\"]",  # an identity escape: an error in Unicode mode
    r"(?>a)",
    r"(?i)a",
    r"(?P<x>a)",
    r"\Aa\Z",
    r"[]a]",
    r"a{2}+",
]
PORTABLE = [
    r"[0-9a-f-]{36}",
    r"[A-Za-z0-9_\-]{10,255}",
    r"ord_[0-9]{4}",
    r"a+?b",
    r"[\]a]+",
    r"\x41\u0042+",
    r"(?:ab|cd)*",
    r"\d+\.\d+",
    r"[^,\s]+",
    r"(?=a)[a-z]+",
    r".+",
]
# No comma: a bare comma is refused as two header values, which the description says.
SAMPLE_KEYS = ["a", "aa", "aaaa", "A", "AB", "ab", "abcd", "a{3}", "1.5", "ord_1234", "x" * 36]


def _resolved(**raw: Any) -> Options:
    return combine(validate_options(raw))


@pytest.mark.parametrize("pattern", NOT_PORTABLE)
def test_a_pattern_that_ecmascript_reads_otherwise_is_described_not_published(pattern: str) -> None:
    options = _resolved(key_pattern=pattern)
    parameter = _key_parameter(options)
    assert "pattern" not in parameter["schema"]
    assert f"`{pattern}`" in parameter["description"]


def test_a_compiled_patterns_flags_are_described() -> None:
    options = _resolved(key_pattern=re.compile(r"[a-z]+", re.IGNORECASE))
    parameter = _key_parameter(options)
    assert "pattern" not in parameter["schema"]
    assert "`[a-z]+` with the flags IGNORECASE" in parameter["description"]


def test_published_patterns_accept_in_ecmascript_exactly_what_the_server_accepts() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    published = {}
    for pattern in PORTABLE:
        schema = key_schema(_resolved(key_pattern=pattern))
        published[pattern] = schema["pattern"]
    # Unicode mode, as ajv and most validators compile OpenAPI patterns.
    script = (
        "const [patterns, keys] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const out = {};"
        "for (const [name, p] of Object.entries(patterns)) {"
        "  const re = new RegExp(p, 'u'); out[name] = keys.map(k => re.test(k)); }"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run(
        [node, "-e", script],
        input=json.dumps([published, SAMPLE_KEYS]),
        capture_output=True,
        text=True,
        check=True,
    )
    in_ecmascript = json.loads(result.stdout)
    for pattern in PORTABLE:
        options = _resolved(key_pattern=pattern)
        on_the_server = []
        for key in SAMPLE_KEYS:
            try:
                parse_key(key, options)
                on_the_server.append(True)
            except KeyInvalid:
                on_the_server.append(False)
        assert in_ecmascript[pattern] == on_the_server, pattern


def test_the_description_says_how_long_keys_are_kept_in_words() -> None:
    def remembered(ttl: int) -> str:
        description: str = _key_parameter(_resolved(ttl=ttl))["description"]
        return description

    assert "Remembered for 1 hour from" in remembered(3600)
    assert "Remembered for 7 days from" in remembered(7 * 86400)
    assert "Remembered for 90 seconds from" in remembered(90)


def test_the_description_says_a_comma_is_refused() -> None:
    # A pattern that allows commas: the server still refuses "a,b" (two header values).
    parameter = _key_parameter(_resolved(key_pattern=r".+"))
    assert "comma" in parameter["description"]
    with pytest.raises(KeyInvalid):
        parse_key("a,b", _resolved(key_pattern=r".+"))
