"""Run the test suite once per database backend: ``make test`` calls this.

SQLite always runs. PostgreSQL and MySQL/MariaDB run when their server can be
reached (see tests/settings.py for the addresses); otherwise they are reported
as SKIPPED, loudly. With IDEMPOTENCY_REQUIRE_ALL_BACKENDS=1 (set by .ci/run) a
backend or Redis that cannot be reached fails the run instead.

Extra arguments go to pytest, e.g. ``make test ARGS="-k replay"``; set
IDEMPOTENCY_TEST_BACKENDS=postgresql to run one backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALL = ("sqlite", "postgresql", "mysql")


def probe(backend: str) -> str | None:
    """None if the backend can be used, else why not."""
    if backend == "sqlite":
        return None
    env = {**os.environ, "IDEMPOTENCY_TEST_DB": backend, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def probe_redis() -> str | None:
    code = (
        "import os, redis\n"
        "redis.Redis.from_url(os.environ.get('IDEMPOTENCY_TEST_REDIS', "
        "'redis://127.0.0.1:6379/15'), socket_connect_timeout=2).ping()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else "unreachable"


def main() -> int:
    required = os.environ.get("IDEMPOTENCY_REQUIRE_ALL_BACKENDS") == "1"
    wanted = [b for b in os.environ.get("IDEMPOTENCY_TEST_BACKENDS", ",".join(ALL)).split(",") if b]
    problems: list[str] = []
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    redis_problem = probe_redis()
    if redis_problem:
        msg = f"Redis unreachable ({redis_problem})"
        if required:
            problems.append(msg)
        else:
            print(f"*** SKIPPED: Redis tests: {msg}", flush=True)
    env_extra = {"IDEMPOTENCY_TEST_REDIS_AVAILABLE": "0" if redis_problem else "1"}
    for backend in wanted:
        problem = probe(backend)
        if problem:
            msg = f"{backend} unreachable: {problem}"
            if required:
                problems.append(msg)
                print(f"*** FAILED: {msg}", flush=True)
            else:
                print(f"*** SKIPPED: backend {msg}", flush=True)
            continue
        print(f"\n===== tests on {backend} =====", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            env = {
                **os.environ,
                **env_extra,
                "IDEMPOTENCY_TEST_DB": backend,
                "IDEMPOTENCY_TEST_SQLITE_DIR": tmp,
            }
            code = subprocess.call(
                [sys.executable, "-m", "pytest", f"--junitxml={junit}", *sys.argv[1:]],
                cwd=ROOT,
                env=env,
            )
            if junit.exists():
                suite = ET.parse(junit).getroot()
                suite = suite if suite.tag == "testsuite" else suite[0]
                tests = int(suite.get("tests", 0))
                failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
                skipped = int(suite.get("skipped", 0))
                totals["passed"] += tests - failed - skipped
                totals["failed"] += failed
                totals["skipped"] += skipped
        if code not in (0,):
            problems.append(f"pytest on {backend} exited with {code}")
    print()
    for problem in problems:
        print(f"*** {problem}")
    print(
        f"all backends: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['skipped']} skipped"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
