"""PostgreSQL: the completion UPDATE is a HOT update (issue 13), so it writes
no new entry into any index of the records table."""

import pytest
from django.db import connections
from rest_framework.test import APIClient

from django_idempotency import conf
from django_idempotency.models import IdempotencyRecord
from tests.helpers import post

TABLE = IdempotencyRecord._meta.db_table


@pytest.fixture
def postgresql() -> None:
    if connections[conf.get_settings().database].vendor != "postgresql":
        pytest.skip("HOT updates are PostgreSQL's")


def _updates() -> tuple[int, int]:
    """(updates, HOT updates) of the records table so far, this backend's
    pending counts included."""
    with connections[conf.get_settings().database].cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT pg_stat_get_tuples_updated(%s::regclass) "
            "+ pg_stat_get_xact_tuples_updated(%s::regclass), "
            "pg_stat_get_tuples_hot_updated(%s::regclass) "
            "+ pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [TABLE] * 4,
        )
        updated, hot = cursor.fetchone()
    return int(updated), int(hot)


@pytest.mark.django_db(transaction=True)
def test_a_first_requests_completion_is_a_hot_update(postgresql: None, client: APIClient) -> None:
    # HOT needs room on the row's page: earlier tests may have filled the
    # pages with dead rows, which only VACUUM frees.
    with connections[conf.get_settings().database].cursor() as cursor:
        cursor.execute(f"VACUUM {TABLE}")
    updated, hot = _updates()

    for n in range(5):
        assert post(client, "/function/", key=f"hot-{n}").status_code == 201

    after_updated, after_hot = _updates()
    assert after_updated - updated == 5
    assert after_hot - hot == 5
