"""The cost of the app in statements sent to the records' database.

Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) is not
counted. ``/bare/`` is ``/function/`` without the app: the difference between
the two is what the app adds.
"""

from typing import Any

import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_idempotency import conf
from django_idempotency.models import IdempotencyRecord
from tests.factories import RecordFactory
from tests.helpers import assert_problem, fingerprint_for, post
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")
TABLE = IdempotencyRecord._meta.db_table
#: On PostgreSQL the claim calls a function (migrations 0004, 0005) that names no table.
CLAIM_FUNCTION = "django_idempotency_claim_v"


def on_records(sql: str) -> bool:
    """Whether a statement reads or writes the records."""
    return TABLE in sql or CLAIM_FUNCTION in sql


def records_connection() -> BaseDatabaseWrapper:
    return connections[conf.get_settings().database]


def is_postgresql() -> bool:
    return records_connection().vendor == "postgresql"


def statements(
    client: APIClient, url: str, data: Any = None, **kwargs: Any
) -> tuple[Any, list[str]]:
    """(response, the statements it sent, transaction control left out)."""
    with CaptureQueriesContext(records_connection()) as captured:
        response = post(client, url, data, **kwargs)
    sql = [q["sql"] for q in captured.captured_queries]
    return response, [s for s in sql if not s.lstrip().upper().startswith(_CONTROL)]


def baseline(client: APIClient, method: str = "post") -> int:
    """Statements of the same request to the view without the app."""
    response, sql = statements(client, "/bare/", method=method)
    assert response.status_code == 201
    return len(sql)


# Rules 1-3: nothing at all ----------------------------------------------------


def test_method_not_covered_adds_no_statement(client: APIClient) -> None:
    expected = baseline(client, method="put")
    response, sql = statements(client, "/function/", key="k", method="put")

    assert response.status_code == 201
    assert len(sql) == expected
    assert not [s for s in sql if on_records(s)]


def test_no_key_adds_no_statement(client: APIClient) -> None:
    expected = baseline(client)
    response, sql = statements(client, "/function/")

    assert response.status_code == 201
    assert len(sql) == expected
    assert not [s for s in sql if on_records(s)]


def test_missing_required_key_sends_no_statement(client: APIClient) -> None:
    response, sql = statements(client, "/letters/")

    assert_problem(response, 400, "idempotency_key_missing")
    assert sql == []


@pytest.mark.parametrize("key", ["", "x" * 256, "cl\u00e9", "a, b", "a b"])
def test_invalid_key_sends_no_statement(client: APIClient, key: str) -> None:
    response, sql = statements(client, "/function/", key=key)

    assert_problem(response, 400, "idempotency_key_invalid")
    assert sql == []


# Rule 4: first request -------------------------------------------------------


@pytest.mark.parametrize("url", ["/function/", "/atomic/"])
def test_first_request_adds_at_most_two_statements(client: APIClient, url: str) -> None:
    expected = baseline(client)
    response, sql = statements(client, url, key="k")

    assert response.status_code == 201
    added = len(sql) - expected
    assert 1 <= added <= 2
    assert len([s for s in sql if on_records(s)]) == added


def test_first_request_released_after_a_validation_error_adds_at_most_two(
    client: APIClient,
) -> None:
    _, bare = statements(client, "/bare/", {"amount": "x"})
    response, sql = statements(client, "/function/", {"amount": "x"}, key="k")

    assert response.status_code == 400
    assert len(sql) - len(bare) <= 2


# Rules 6-8: answered from the record -------------------------------------------


def _expected_answer_cost() -> int:
    return 1 if is_postgresql() else 2


def test_replay_costs_at_most_two_statements_one_on_postgresql(client: APIClient) -> None:
    _, first = statements(client, "/function/", key="k")

    response, sql = statements(client, "/function/", key="k")

    assert response["Idempotent-Replayed"] == "true"
    assert len(sql) <= 2
    if is_postgresql():
        assert len(sql) == 1
    assert len(sql) < len(first)  # cheaper than running the view
    assert Payment.objects.count() == 1


def test_replay_of_a_factory_record(client: APIClient) -> None:
    RecordFactory(key="k", fingerprint=fingerprint_for("/function/", {"amount": 10}))

    response, sql = statements(client, "/function/", key="k")

    assert response["Idempotent-Replayed"] == "true"
    assert len(sql) <= _expected_answer_cost()


def test_mismatch_costs_at_most_two_statements_one_on_postgresql(client: APIClient) -> None:
    post(client, "/function/", key="k")

    response, sql = statements(client, "/function/", {"amount": 1}, key="k")

    assert_problem(response, 422, "idempotency_key_reused")
    assert len(sql) <= _expected_answer_cost()


def test_in_progress_costs_at_most_two_statements_one_on_postgresql(client: APIClient) -> None:
    RecordFactory(
        key="k",
        running=True,
        fingerprint=fingerprint_for("/function/", {"amount": 10}),
    )

    response, sql = statements(client, "/function/", key="k")

    assert_problem(response, 409, "idempotency_request_in_progress")
    assert len(sql) <= _expected_answer_cost()


@pytest.mark.parametrize("url", ["/apiview/", "/viewset/refund/", "/mixin-viewset/bulk/"])
def test_replay_cost_is_the_same_on_every_kind_of_view(client: APIClient, url: str) -> None:
    post(client, url, key="k")

    response, sql = statements(client, url, key="k")

    assert response["Idempotent-Replayed"] == "true"
    assert len(sql) <= _expected_answer_cost()


def test_costs_do_not_grow_with_the_table(client: APIClient) -> None:
    post(client, "/function/", key="k")
    _, before = statements(client, "/function/", key="k")
    RecordFactory.create_batch(300)
    _, after = statements(client, "/function/", key="k")
    _, first = statements(client, "/function/", key="new")

    assert len(after) == len(before)
    assert len(first) <= baseline(client) + 2
