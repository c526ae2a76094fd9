"""Real gunicorn servers, several sync worker processes each, sharing the test
database with the test process. Tests that use them need
``@pytest.mark.django_db(transaction=True)`` so that rows are committed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_django import DjangoDbBlocker

from tests.factories import CLIENT_API_KEY

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8
#: Servers kept running between tests, in each backend's session.
MAX_LIVE_SERVERS = 3
#: The aliases records are sharded across with SERVER_SHARDED=1.
SHARDS = ("records", "records_2")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def post(self, path: str, key: str, **kwargs: Any) -> Any:
        headers = {"Idempotency-Key": key, "X-Api-Key": CLIENT_API_KEY, **kwargs.pop("headers", {})}
        return requests.post(
            self.url + path,
            json=kwargs.pop("json", {"amount": 1}),
            headers=headers,
            timeout=60,
            **kwargs,
        )

    def fire(self, path: str, key: str, n: int, **kwargs: Any) -> list[requests.Response]:
        """Send n identical requests at the same moment from n threads."""
        barrier = threading.Barrier(n)
        results: list[requests.Response | BaseException] = [None] * n  # type: ignore[list-item]

        def one(i: int) -> None:
            barrier.wait()
            try:
                results[i] = self.post(path, key, **kwargs)
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"requests failed: {errors[:3]}\n{self.log.read_text()[-3000:]}"
        return results  # type: ignore[return-value]


#: ``server_factory(workers=8, **env)``: a running server for that environment.
ServerFactory = Callable[..., Server]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(
    db_name: str, shard_names: str, tmp: Path, env_extra: dict[str, str], workers: int
) -> Server:
    port = _free_port()
    log = tmp / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.concurrency.settings",
        "IDEMPOTENCY_SERVER_DB_NAME": db_name,
        # The test databases of the "records" aliases, for SERVER_SHARDED=1.
        "IDEMPOTENCY_SERVER_SHARD_NAMES": shard_names,
        "PYTHONPATH": str(ROOT),
        # Redis outlives test databases: keys of earlier runs must not be seen.
        "SERVER_REDIS_PREFIX": f"run-{os.getpid()}-{port}",
        **env_extra,
    }
    with log.open("wb") as log_file:
        if env_extra.get("SERVER_ASGI") == "1":
            # uvicorn's own supervisor: several worker processes, a dead one replaced.
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.concurrency.asgi:application",
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "2",
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "tests.concurrency.wsgi:application",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "120",
                "--graceful-timeout",
                "2",
                "--log-level",
                "warning",
            ]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text()}")
        try:
            requests.get(url, timeout=(1, 10))
            return Server(url, process, log)
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server_factory(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory]:
    """``server_factory(**env)``: one gunicorn per distinct environment, reused."""
    from django.db import connection, connections

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
        shard_names = json.dumps(
            {alias: connections[alias].settings_dict["NAME"] for alias in SHARDS}
        )
    tmp = tmp_path_factory.mktemp("servers")
    # Least recently used first; each entry with the test that last asked for it.
    servers: OrderedDict[tuple[tuple[str, str], ...], tuple[Server, str]] = OrderedDict()

    def get(workers: int = WORKERS, **env: str) -> Server:
        key = (("workers", str(workers)), *sorted(env.items()))
        test = _current_test()
        if key in servers:
            server = servers.pop(key)[0]
        else:
            # Every server kept for the rest of the session, in three
            # backends' sessions at once, filled the machine's memory (over
            # a hundred workers of 60 MB): only the few last used stay.
            for old in [k for k, (_, by) in servers.items() if by != test]:
                if len(servers) < MAX_LIVE_SERVERS:
                    break
                _stop(servers.pop(old)[0])
            server = _start(db_name, shard_names, tmp, env, workers)
        servers[key] = (server, test)
        return server

    yield get
    for server, _ in servers.values():
        _stop(server)


def _current_test() -> str:
    """The running test's id (pytest names it while it runs)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


@pytest.fixture
def server(server_factory: ServerFactory) -> Server:
    return server_factory()


@pytest.fixture
def pid_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def pgbouncer(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    """The port of a PgBouncer in transaction pooling mode before the test server."""
    from django.db import connection

    from . import pgbouncer as bouncer

    binary = bouncer.find_binary()
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("IDEMPOTENCY_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with django_db_blocker.unblock():
        settings = connection.settings_dict
    running = bouncer.start(
        binary,
        tmp_path_factory.mktemp("pgbouncer"),
        settings["HOST"] or "127.0.0.1",
        int(settings["PORT"] or 5432),
        settings["USER"],
        settings["PASSWORD"],
    )
    yield running.port
    running.stop()
