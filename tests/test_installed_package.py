"""CI's oldest-version run installs the built wheel (tox.ini): prove that the
suite then exercises the installed package, not the checkout beside it."""

import os
from pathlib import Path

import pytest

import django_idempotency

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    os.environ.get("IDEMPOTENCY_TEST_INSTALLED_WHEEL") != "1", reason="runs against the checkout"
)
def test_the_package_under_test_is_the_installed_wheel() -> None:
    location = Path(django_idempotency.__file__).resolve()

    checkout = ROOT / "django_idempotency"
    assert checkout not in location.parents, f"testing the checkout ({location}), not the wheel"
    assert "site-packages" in location.parts
    # Data files a wheel can lose: templates, migrations, the type marker.
    package = location.parent
    assert (package / "py.typed").exists()
    assert (package / "migrations" / "0001_initial.py").exists()
    assert any((package / "templates").rglob("change_list.html"))
