"""A real PgBouncer in transaction pooling mode in front of the test server.

Started by the ``pgbouncer`` fixture (tests/concurrency/conftest.py) on a free
port, with its configuration in a temporary directory, and stopped at the end
of the session. Debian's package installs it as /usr/sbin/pgbouncer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Fewer server connections than the gunicorn workers that share them, so that
# consecutive transactions of one client land on different server connections:
# what breaks anything that relies on session state.
POOL_SIZE = 6


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def find_binary() -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> list[str]:
    """PgBouncer refuses to run as root; it drops to another user with -u."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["-u", name]
    raise RuntimeError("running as root and there is neither a postgres nor a nobody user")


def start(binary: str, tmp: Path, host: str, port: int, user: str, password: str) -> PgBouncer:
    listen = _free_port()
    config = tmp / "pgbouncer.ini"
    # auth_type=any: no password; every database is reached as `user`. The
    # fallback "*" entry maps each database name (the per-run test databases)
    # to the same name on the server.
    config.write_text(
        "[databases]\n"
        f"* = host={host} port={port} user={user}"
        + (f" password={password}" if password else "")
        + "\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\n"
        "unix_socket_dir =\n"
        "auth_type = any\n"
        "pool_mode = transaction\n"
        # Hand out server connections in turn, not the most recently used one:
        # a client's consecutive transactions then run on different servers,
        # as under production load, instead of on the same one by luck.
        "server_round_robin = 1\n"
        f"default_pool_size = {POOL_SIZE}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 500\n"
        # A starved pool shows up as an error in seconds, not as a hung test.
        "query_wait_timeout = 15\n"
        # What psycopg and Django send at startup.
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    log = tmp / "pgbouncer.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, *_run_as(), str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
    bouncer = PgBouncer(listen, process, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
            return bouncer
        except OSError:
            time.sleep(0.05)
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not start:\n{log.read_text()}")
