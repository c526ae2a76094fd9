"""The engine's decisions, which do no I/O: given a record as the database
returned it, what happens to the request that found it."""

import itertools
from typing import Any

import pytest

from django_idempotency.engine import replayable, should_take_over
from django_idempotency.models import State
from django_idempotency.store import Existing


def found(
    *,
    state: str,
    same_request: bool = True,
    expired: bool = False,
    abandoned: bool = False,
    body: Any = b'{"id": 1}',
) -> Existing:
    return Existing(
        record_id=1,
        state=state,
        same_request=same_request,
        token="t" * 32,
        request_id="req-1",
        status=201 if state == State.COMPLETED else None,
        headers='[["Content-Type", "application/json"]]' if state == State.COMPLETED else "",
        body=body if state == State.COMPLETED else None,
        expired=expired,
        abandoned=abandoned,
    )


def test_a_completed_record_is_replayed_as_stored() -> None:
    stored = replayable(found(state=State.COMPLETED))
    assert stored is not None
    assert (stored.status, stored.body, stored.request_id) == (201, b'{"id": 1}', "req-1")
    assert stored.headers == [("Content-Type", "application/json")]


def test_a_record_in_progress_has_nothing_to_replay() -> None:
    assert replayable(found(state=State.IN_PROGRESS)) is None


@pytest.mark.parametrize("same_request", [True, False])
def test_a_live_record_is_never_taken_over(same_request: bool) -> None:
    assert not should_take_over(found(state=State.COMPLETED, same_request=same_request))
    assert not should_take_over(found(state=State.IN_PROGRESS, same_request=same_request))


def test_an_abandoned_claim_is_taken_over_by_the_same_request_only() -> None:
    # Another body with the key of a crashed request is a reuse (422), not a retry.
    assert should_take_over(found(state=State.IN_PROGRESS, abandoned=True))
    assert not should_take_over(found(state=State.IN_PROGRESS, abandoned=True, same_request=False))


@pytest.mark.parametrize("same_request", [True, False])
def test_an_expired_record_is_free_for_any_request(same_request: bool) -> None:
    same = same_request
    completed = found(state=State.COMPLETED, expired=True, abandoned=True, same_request=same)
    assert should_take_over(completed)
    crashed = found(state=State.IN_PROGRESS, expired=True, abandoned=True, same_request=same)
    assert should_take_over(crashed)


@pytest.mark.parametrize("same_request", [True, False])
def test_an_expired_record_whose_request_still_runs_is_not_free(same_request: bool) -> None:
    # A takeover near the end of ttl: its worker is live, a second run would overlap it.
    running = found(state=State.IN_PROGRESS, expired=True, same_request=same_request)
    assert not should_take_over(running)


def test_every_combination_has_a_decision_and_live_work_is_never_taken_over() -> None:
    for state, same, expired, abandoned in itertools.product(
        [State.IN_PROGRESS, State.COMPLETED], [True, False], [True, False], [True, False]
    ):
        record = found(state=state, same_request=same, expired=expired, abandoned=abandoned)
        if state == State.IN_PROGRESS and not abandoned:
            assert not should_take_over(record), record
        if state == State.COMPLETED and not expired:
            assert not should_take_over(record), record
