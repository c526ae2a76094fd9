"""Run the test suite once per database backend: ``make test`` calls this.

SQLite always runs. PostgreSQL and MySQL/MariaDB run when their server can be
reached (see tests/settings.py for the addresses); otherwise they are reported
as SKIPPED, loudly. With IDEMPOTENCY_REQUIRE_ALL_BACKENDS=1 (set by .ci/run) a
backend or Redis that cannot be reached fails the run instead.

Extra arguments go to pytest, e.g. ``make test ARGS="-k replay"``; set
IDEMPOTENCY_TEST_BACKENDS=postgresql to run one backend. The backends run at
the same time, each printed when it finishes; IDEMPOTENCY_TEST_PARALLEL=0 runs
them one after the other with live output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
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


def _counts(junit: Path) -> dict[str, int]:
    if not junit.exists():
        return {"passed": 0, "failed": 0, "skipped": 0}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    tests = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": tests - failed - skipped, "failed": failed, "skipped": skipped}


def main() -> int:
    required = os.environ.get("IDEMPOTENCY_REQUIRE_ALL_BACKENDS") == "1"
    wanted = [b for b in os.environ.get("IDEMPOTENCY_TEST_BACKENDS", ",".join(ALL)).split(",") if b]
    # The backends run at once: most of a run is waiting (on servers, on the
    # databases, on the views of the process tests), not computing.
    parallel = os.environ.get("IDEMPOTENCY_TEST_PARALLEL", "1") != "0"
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
    runnable = []
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
        runnable.append(backend)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        running: list[tuple[str, subprocess.Popen[bytes], Path, Path]] = []
        for backend in runnable:
            workdir = Path(tmp, backend)
            workdir.mkdir()
            junit, log = workdir / "junit.xml", workdir / "output.txt"
            env = {
                **os.environ,
                **env_extra,
                "IDEMPOTENCY_TEST_DB": backend,
                "IDEMPOTENCY_TEST_SQLITE_DIR": str(workdir),
                # Tests that start servers take turns across the backends (tests/conftest.py).
                "IDEMPOTENCY_TEST_PROCESS_LOCK": str(Path(tmp, "processes.lock")),
            }
            command = [sys.executable, "-m", "pytest", f"--junitxml={junit}", *sys.argv[1:]]
            if parallel:
                print(f"===== started the tests on {backend} =====", flush=True)
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
            else:
                print(f"\n===== tests on {backend} =====", flush=True)
                proc = subprocess.Popen(command, cwd=ROOT, env=env)
                proc.wait()
            running.append((backend, proc, junit, log))
        for backend, proc, junit, log in running:
            code = proc.wait()
            if parallel:
                print(f"\n===== tests on {backend} =====", flush=True)
                sys.stdout.write(log.read_text(errors="replace"))
                sys.stdout.flush()
            for name, count in _counts(junit).items():
                totals[name] += count
            if code != 0:
                problems.append(f"pytest on {backend} exited with {code}")
        elapsed = time.monotonic() - started
    print()
    for problem in problems:
        print(f"*** {problem}")
    print(
        f"all backends: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['skipped']} skipped in {elapsed:.0f} s"
        + (" (run in parallel)" if parallel and len(runnable) > 1 else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
