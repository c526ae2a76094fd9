"""django_idempotency.cors: the header names a CORS configuration must list,
derived from the IDEMPOTENCY setting's dict (the browser side is in
test_browser_checkout.py)."""

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_idempotency import cors


def test_the_defaults_allow_the_key_and_expose_replay_retry_and_request_id() -> None:
    assert cors.allow_headers() == ("idempotency-key",)
    assert cors.expose_headers() == ("idempotent-replayed", "retry-after", "x-request-id")


def test_renamed_headers_are_listed_under_their_new_names() -> None:
    setting = {"HEADER": "X-Idempotency-Key", "REQUEST_ID_HEADER": "X-Correlation-Id"}

    assert cors.allow_headers(setting) == ("x-idempotency-key",)
    exposed = ("idempotent-replayed", "retry-after", "x-correlation-id")
    assert cors.expose_headers(setting) == exposed


def test_disabled_headers_are_left_out() -> None:
    setting = {"REPLAYED_HEADER": None, "REQUEST_ID_HEADER": None}

    assert cors.expose_headers(setting) == ("retry-after",)


def test_the_other_settings_do_not_matter() -> None:
    setting = {"LOCK": "cache", "TTL": 60, "SCOPE": "no.such.module.scope"}

    assert cors.allow_headers(setting) == cors.allow_headers()
    assert cors.expose_headers(setting) == cors.expose_headers()


def test_a_header_that_is_not_a_header_name_is_a_configuration_error() -> None:
    rule = r"IDEMPOTENCY\['HEADER'\] must be an HTTP header name"
    with pytest.raises(ImproperlyConfigured, match=rule):
        cors.allow_headers({"HEADER": "Idempotency Key"})


def test_the_recipe_configures_what_the_browser_test_proves() -> None:
    """docs/recipes/cors.md's settings block, run, equals the sample project's
    settings that test_browser_checkout.py uses."""
    import sample_project.settings as sample

    page = (Path(__file__).parent.parent / "docs" / "recipes" / "cors.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "CORS_" in b)
    recipe: dict[str, Any] = {}
    exec(block, recipe)

    for name in (
        "CORS_URLS_REGEX",
        "CORS_ALLOW_CREDENTIALS",
        "CORS_ALLOW_HEADERS",
        "CORS_EXPOSE_HEADERS",
    ):
        assert recipe[name] == getattr(sample, name), name
    assert recipe["CSRF_TRUSTED_ORIGINS"] == recipe["CORS_ALLOWED_ORIGINS"]
    assert recipe["MIDDLEWARE"][0] == "corsheaders.middleware.CorsMiddleware"


def test_the_expiry_header_is_exposed_when_the_setting_names_it() -> None:
    setting = {"EXPIRY_HEADER": "Idempotency-Key-Expires"}

    assert cors.expose_headers(setting) == (*cors.expose_headers(), "idempotency-key-expires")
