"""Guarantees 1 to 4 of docs/concurrency.md through a real PgBouncer in
transaction pooling mode, the way most production PostgreSQL sites run:
gunicorn workers with persistent connections (CONN_MAX_AGE=None) to a
PgBouncer whose pool is smaller than the number of workers, so consecutive
transactions of one Django connection run on different server connections.

A claim's lock_timeout is let pass by moving the database's clock
(tests/clock.py), so no test waits for it.
"""

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from django_idempotency.models import IdempotencyRecord, State
from tests.testapp.models import Payment

from .conftest import Server, ServerFactory
from .helpers import Background, wait_for_claim, wait_for_lock_expiry, wait_until

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("IDEMPOTENCY_TEST_DB") != "postgresql", reason="PgBouncer is PostgreSQL's"
    ),
]

MODES = [
    pytest.param("plain/", {}, id="plain"),
    pytest.param("atomic/", {}, id="atomic"),
    pytest.param("plain/", {"SERVER_ATOMIC_REQUESTS": "1"}, id="plain+ATOMIC_REQUESTS"),
]


@pytest.fixture
def through_pgbouncer(server_factory: ServerFactory, pgbouncer: int) -> ServerFactory:
    def get(**env: str) -> Server:
        return server_factory(SERVER_DB_PORT=str(pgbouncer), SERVER_CONN_MAX_AGE="1", **env)

    return get


def originals(responses: list) -> list:  # type: ignore[type-arg]
    return [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]


@pytest.mark.parametrize(("path", "env"), MODES)
def test_simultaneous_duplicates_run_the_view_once(
    through_pgbouncer: ServerFactory, path: str, env: dict[str, Any]
) -> None:
    server = through_pgbouncer(**env)
    for round_ in range(3):
        key = f"pgb-race-{path.strip('/')}-{len(env)}-{round_}"
        responses = server.fire(path, key, 16, headers={"X-Sleep": "0.3"})

        assert Payment.objects.filter(reference=key).count() == 1
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses
        assert len(originals(responses)) == 1, statuses
        assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1


@pytest.mark.parametrize(("path", "env"), MODES)
def test_duplicate_is_answered_409_while_the_first_request_runs(
    through_pgbouncer: ServerFactory, path: str, env: dict[str, Any], tmp_path: Path
) -> None:
    server = through_pgbouncer(**env)
    key = f"pgb-slow-{path.strip('/')}-{len(env)}"
    release = tmp_path / "release"
    first = Background(lambda: server.post(path, key, headers={"X-Hold": str(release)}))
    wait_for_claim(key)

    duplicate = server.post(path, key)
    assert first.running, "the duplicate was only answered after the first request finished"
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "idempotency_request_in_progress"
    assert duplicate.headers["Retry-After"]

    release.touch()
    original = first.result()
    assert original.status_code == 201
    replay = server.post(path, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == original.json()
    assert Payment.objects.filter(reference=key).count() == 1


@pytest.mark.parametrize(("path", "env"), MODES)
def test_killed_worker_is_taken_over_by_exactly_one_retry(
    through_pgbouncer: ServerFactory, path: str, env: dict[str, Any], pid_dir: Path
) -> None:
    server = through_pgbouncer(**env)
    key = f"pgb-killed-{path.strip('/')}-{len(env)}"
    victim = Background(
        lambda: server.post(path, key, headers={"X-Sleep": "60", "X-Pid-Dir": str(pid_dir)})
    )
    pid_file = Path(pid_dir, f"{key}.pid")
    wait_until(pid_file.exists, "the worker to start the view")
    wait_for_claim(key)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert victim.error() is not None

    assert server.post(path, key).status_code == 409  # within lock_timeout
    wait_for_lock_expiry(key)
    responses = server.fire(path, key, 12)
    assert {r.status_code for r in responses} <= {201, 409}
    assert len(originals(responses)) == 1, sorted(r.status_code for r in responses)
    transactional = path == "atomic/" or "SERVER_ATOMIC_REQUESTS" in env
    # In a transaction the killed worker's payment was rolled back when
    # PgBouncer dropped its server connection; otherwise it was committed.
    assert Payment.objects.filter(reference=key).count() == (1 if transactional else 2)
    replay = server.post(path, key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == originals(responses)[0].json()


@pytest.mark.parametrize(("path", "env"), MODES)
def test_slow_owner_cannot_overwrite_the_new_owner(
    through_pgbouncer: ServerFactory, path: str, env: dict[str, Any], tmp_path: Path
) -> None:
    server = through_pgbouncer(**env)
    key = f"pgb-fenced-{path.strip('/')}-{len(env)}"
    release = tmp_path / "release"
    slow = Background(
        lambda: server.post(path, key, headers={"X-Hold": str(release), "X-Request-Id": "slow-one"})
    )
    wait_for_claim(key)
    wait_for_lock_expiry(key)
    new_owner = server.post(path, key, headers={"X-Request-Id": "new-owner"})
    assert new_owner.status_code == 201
    assert "Idempotent-Replayed" not in new_owner.headers
    assert slow.running
    release.touch()

    slow_response = slow.result()
    record = IdempotencyRecord.objects.get(key=key)
    assert record.state == State.COMPLETED
    assert record.request_id == "new-owner"
    assert server.post(path, key).json() == new_owner.json()
    if path == "atomic/":
        assert slow_response.status_code == 409  # fenced out inside its transaction
        assert Payment.objects.filter(reference=key).count() == 1
    else:
        assert slow_response.status_code == 201  # its effects were already committed
        assert Payment.objects.filter(reference=key).count() == 2


def _sequential(server: Server, name: str, n: int = 20) -> list[Any]:
    # Distinct keys one after another: each worker's persistent connection
    # runs the same claim statement again and again.
    return [server.post("plain/", f"pgb-{name}-{i}") for i in range(n)]


def test_server_side_binding_works_behind_pgbouncer(through_pgbouncer: ServerFactory) -> None:
    # Django sets psycopg's prepare_threshold to None: parameters are bound on
    # the server, in unnamed statements that live for one round trip.
    server = through_pgbouncer(SERVER_DB_OPTIONS=json.dumps({"server_side_binding": True}))
    assert {r.status_code for r in _sequential(server, "binding")} == {201}


def test_prepared_statements_break_behind_pgbouncer_before_1_21(
    through_pgbouncer: ServerFactory,
) -> None:
    # Why check W005 exists: psycopg prepares a statement on one server
    # connection, and PgBouncer 1.18 in transaction pooling sends the client's
    # next execution to another, where it does not exist, or where another
    # client's statement of the same name does.
    server = through_pgbouncer(
        SERVER_DB_OPTIONS=json.dumps({"server_side_binding": True, "prepare_threshold": 1})
    )
    responses = _sequential(server, "prepared")
    failed = [r for r in responses if r.status_code != 201]
    assert failed, "every request succeeded: is this PgBouncer 1.21+ with max_prepared_statements?"
    # Mostly the claim fails: the app answers 503 and the view does not run.
    # The view's own statements can fail the same way (a 500, as without the app).
    assert {r.status_code for r in failed} <= {500, 503}
    unavailable = [r for r in failed if r.status_code == 503]
    assert unavailable
    assert {r.json()["code"] for r in unavailable} == {"idempotency_unavailable"}
    keys = [f"pgb-prepared-{i}" for i, r in enumerate(responses) if r.status_code == 503]
    assert not Payment.objects.filter(reference__in=keys).exists()
