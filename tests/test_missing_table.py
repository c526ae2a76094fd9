"""A records table that was never migrated is a misconfiguration, not an
outage: a clear 500 naming the fix (never 503 + Retry-After, which clients
retry forever) and a warning from ``manage.py check --database``."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROJECT = """
from tests.settings import *
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
"""

_REQUEST = """
import json, logging, django
django.setup()
from django.test import Client
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append((record.levelname, record.getMessage()))
logging.getLogger("django_idempotency").addHandler(Keep())
response = Client(HTTP_X_API_KEY="test-client").post(
    "/function/", {"amount": 1}, content_type="application/json",
    HTTP_IDEMPOTENCY_KEY="never-migrated")
print(json.dumps({"status": response.status_code, "headers": dict(response.headers),
                  "body": response.content.decode(), "logs": seen}))
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "unmigrated_settings.py").write_text(
        _PROJECT.format(db=str(tmp_path / "empty.sqlite3"))
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "unmigrated_settings",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_keyed_request_without_the_table_is_a_clear_500_not_a_retryable_503(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, "-c", _REQUEST)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == 500
    assert "Retry-After" not in out["headers"]
    assert json.loads(out["body"])["code"] == "idempotency_not_migrated"
    errors = [message for level, message in out["logs"] if level == "ERROR"]
    assert any("migrate django_idempotency" in message for message in errors)


def test_check_with_the_database_tag_reports_the_missing_table(tmp_path: Path) -> None:
    result = _run(tmp_path, "-m", "django", "check", "--database", "default")
    assert "django_idempotency.W002" in result.stderr + result.stdout
    assert "migrate django_idempotency" in result.stderr + result.stdout


def test_check_is_quiet_about_the_table_once_migrated(tmp_path: Path) -> None:
    migrate = _run(tmp_path, "-m", "django", "migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    result = _run(tmp_path, "-m", "django", "check", "--database", "default")
    assert result.returncode == 0, result.stderr
    assert "W002" not in result.stderr + result.stdout
