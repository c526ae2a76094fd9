"""What several test modules share: sending a keyed request, checking a
problem response, the fingerprint and record of a request, and whether Redis
can be used."""

import json
import os
import uuid
from typing import Any

import pytest
import redis
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from django_idempotency.identity import default_fingerprint, keyed_fingerprints
from django_idempotency.models import IdempotencyRecord
from tests.settings import REDIS_URL

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def _redis_available() -> bool:
    # tests/run_backends.py probes Redis once for every backend's run.
    flag = os.environ.get("IDEMPOTENCY_TEST_REDIS_AVAILABLE")
    if flag is not None:
        return flag == "1"
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


#: The one marker for tests that need the Redis server.
needs_redis = pytest.mark.skipif(not _redis_available(), reason="Redis is not reachable")


def new_key() -> str:
    # A UUID suits every view, including the one with key_pattern [0-9a-f-]{36}.
    return str(uuid.uuid4())


def post(
    client: APIClient,
    url: str,
    data: Any = None,
    key: str | None = None,
    *,
    method: str = "post",
    header: str = "Idempotency-Key",
    **extra: Any,
) -> Any:
    if key is not None:
        extra["HTTP_" + header.upper().replace("-", "_")] = key
    body = {"amount": 10} if data is None else data
    return getattr(client, method)(url, body, format="json", **extra)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem: dict[str, Any] = json.loads(response.content)
    assert set(problem) >= PROBLEM_FIELDS
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["title"]
    assert problem["detail"]
    assert problem["type"]
    return problem


def fingerprint_for(url: str, data: Any, method: str = "post", query: str = "") -> str:
    """The default fingerprint of the request APIClient sends with ``post()``."""
    factory = APIRequestFactory()
    django_request = getattr(factory, method)(url + query, data, format="json")
    return keyed_fingerprints(default_fingerprint(Request(django_request)))[0]


def record_for(key: str) -> IdempotencyRecord:
    return IdempotencyRecord.objects.get(key=key)


def postgres_admin_connection() -> Any:
    """An autocommit psycopg connection to the server's ``postgres`` database,
    with the test database's credentials: for what cannot run inside the
    test database (ALTER DATABASE ... ALLOW_CONNECTIONS, ending its sessions)."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


def end_session(*, refuse_new: bool = False) -> None:
    """End the server session of this thread's connection (from another one);
    ``refuse_new`` (PostgreSQL): new connections are refused until allowed again."""
    from django.db import connection, connections

    if connection.vendor == "postgresql":
        with postgres_admin_connection() as admin:
            if refuse_new:
                name = connection.ops.quote_name(connection.settings_dict["NAME"])
                admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
            )
    else:
        session = connection.connection.thread_id()
        other = connections.create_connection(connection.alias)
        try:
            with other.cursor() as cursor:
                cursor.execute(f"KILL CONNECTION {int(session)}")
        finally:
            other.close()


def allow_connections() -> None:
    """Undo ``end_session(refuse_new=True)`` (PostgreSQL)."""
    from django.db import connection

    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    with postgres_admin_connection() as admin:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
