"""The engine for async handlers (adrf's ``@api_view``, ``APIView``, viewsets).

The same life as ``engine.handle``, with the same decisions and the same
statements; only the waiting differs. Every database, Redis and signal call
runs in Django's thread-sensitive executor (``sync_to_async``), as the async
ORM runs its queries: within one request they all run in one thread, so on
one connection. The view itself runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from . import cache_lock, store, waiting
from .connections import in_caller_transaction
from .engine import (
    Attempt,
    _after_commit,
    _answer,
    _answer_existing,
    _atomic_failure,
    _claim_or_problem,
    _notifies,
    _redis_front,
    _release_quietly,
    _rendered,
    _start,
    _store_after_view,
    _store_or_release,
    first_answer_headers,
    still_running,
    waiting_pays,
)
from .options import Options

AsyncHandler = Callable[..., Awaitable[HttpResponseBase]]


async def handle_async(
    view: APIView,
    request: Request,
    handler: AsyncHandler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
) -> HttpResponseBase:
    if request.method not in options.methods:
        return await handler(request, *args, **kwargs)
    # Reads the body and may ask the database (a session scope): not on the loop.
    started = await sync_to_async(_start)(view, request, options)
    if started is None:
        return await handler(request, *args, **kwargs)
    if isinstance(started, HttpResponseBase):
        return started
    attempt = started
    if not options.wait or not await sync_to_async(waiting.may_wait_on)(attempt.alias):
        response = await _serve(attempt, handler, args, kwargs, None)
        assert response is not None
        return response
    waiter = waiting.Waiter(options.wait, attempt.new.lookup_hash, attempt.alias)
    while True:
        response = await _serve(attempt, handler, args, kwargs, waiter)
        if response is not None:
            return response
        # On the loop, not in the executor: a waiting duplicate blocks nothing.
        await waiter.apause()


async def _serve(
    attempt: Attempt,
    handler: AsyncHandler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    waiter: waiting.Waiter | None,
) -> HttpResponseBase | None:
    """``engine._serve``: one look at the key; None when ``waiter`` is to wait."""
    options = attempt.options
    if waiter is not None:
        waiter.looking()
    front = _redis_front(attempt)
    if front is not None:
        fast = await _check_even_if_cancelled(front)
        if fast is not None:
            if cache_lock.answers_alone(fast):
                stored = fast.response
                return await sync_to_async(_answer)(
                    attempt, same_request=fast.same_request, stored=stored
                )
            # A lock held for this same request: its holder tells the waiters.
            if waiter and fast.same_request and waiter.may_wait():
                return None
    elif (
        waiter is not None
        and waiter.paused
        and waiter.may_wait()
        and await sync_to_async(still_running)(attempt)
    ):
        return None
    handed_over = False
    claimed = False
    try:
        outcome = await _claim_even_if_cancelled(attempt)
        if isinstance(outcome, HttpResponseBase):
            return outcome
        if isinstance(outcome, store.Existing):
            if waiter and waiting_pays(outcome) and waiter.may_wait():
                return None
            return await sync_to_async(_answer_existing)(attempt, outcome, front)
        claimed = True

        def after_commit(claim: store.Claim, stored: store.StoredResponse | None) -> None:
            _after_commit(attempt, front, claim, stored)

        run = _run_atomic if options.atomic else _run
        response = await _to_the_end(run(attempt, outcome, handler, args, kwargs, after_commit))
        handed_over = True
        return response
    finally:
        if front is not None and not handed_over:
            await sync_to_async(front.forget)(changed=claimed)


T = TypeVar("T")


async def _despite_cancellation(
    work: Awaitable[T], undo: Callable[[T], Awaitable[None]] | None = None
) -> T:
    """Await ``work``; if the request is cancelled meanwhile (Django cancels it
    when the client goes away), let ``work`` finish all the same, ``undo``
    what it did if asked, and then let the cancellation go on.

    Work in the executor finishes anyway (a thread cannot be cancelled): a
    claim or a Redis lock it took would be left behind for a request that
    never runs, and every retry would get 409 until lock_timeout.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # A failure of the work itself was handled where it happened.
        with contextlib.suppress(Exception):
            result = await task
            if undo is not None:
                await undo(result)
        raise


async def _claim_even_if_cancelled(
    attempt: Attempt,
) -> store.Claim | store.Existing | HttpResponseBase:
    async def release(outcome: store.Claim | store.Existing | HttpResponseBase) -> None:
        if isinstance(outcome, store.Claim):
            notify = _notifies(attempt.options, attempt.alias)
            await sync_to_async(_release_quietly)(attempt.alias, outcome, notify=notify)

    return await _despite_cancellation(sync_to_async(_claim_or_problem)(attempt), release)


async def _to_the_end(run: Awaitable[HttpResponseBase]) -> HttpResponseBase:
    """Run the view and store its answer even if the request is cancelled.

    Django cancels an async view when its client goes away, which is exactly
    when that client retries. A sync view runs to the end regardless and its
    answer is stored, so the retry gets the replay; cancelling the view
    halfway instead would leave some of its effects done and the key free,
    and the retry would run it a second time.
    """
    return await _despite_cancellation(run)


async def _check_even_if_cancelled(
    front: cache_lock.RedisFront,
) -> cache_lock.Held | cache_lock.Cached | None:
    async def forget(_: object) -> None:
        await sync_to_async(front.forget)(changed=False)

    return await _despite_cancellation(sync_to_async(front.check)(store.new_token()), forget)


async def _run(
    attempt: Attempt,
    claim: store.Claim,
    handler: AsyncHandler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    after_commit: Callable[[store.Claim, store.StoredResponse | None], None],
) -> HttpResponseBase:
    try:
        response = await handler(attempt.request, *args, **kwargs)
    except BaseException:
        # Cancelled (the client went away, a timeout) counts too: the
        # operation did not complete, so a retry may run it.
        alias = attempt.alias
        await sync_to_async(_release_quietly)(
            alias, claim, notify=_notifies(attempt.options, alias)
        )
        raise
    return await sync_to_async(_complete)(attempt, claim, response, args, kwargs, after_commit)


def _complete(
    attempt: Attempt,
    claim: store.Claim,
    response: HttpResponseBase,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    after_commit: Callable[[store.Claim, store.StoredResponse | None], None],
) -> HttpResponseBase:
    """After the view, outside atomic mode: render, store, notify (in the executor)."""
    response = _rendered(attempt.view, attempt.request, response, args, kwargs)
    alias = attempt.alias
    in_caller = in_caller_transaction(connections[alias])
    stored = _store_after_view(
        alias, claim, response, attempt.request_id, attempt.options, in_caller
    )
    if in_caller:
        transaction.on_commit(lambda: after_commit(claim, stored), using=alias)
    else:
        after_commit(claim, stored)
    return first_answer_headers(attempt, claim, response)


async def _run_atomic(
    attempt: Attempt,
    claim: store.Claim,
    handler: AsyncHandler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    after_commit: Callable[[store.Claim, store.StoredResponse | None], None],
) -> HttpResponseBase:
    """``transaction.atomic`` around an async view.

    Django runs a request's thread-sensitive calls in one thread, so the
    transaction opened there holds every query the view makes through the
    async ORM (or ``sync_to_async``) until it is closed there again. Queries
    sent from another thread (``thread_sensitive=False``) are not part of it.
    """
    alias = attempt.alias
    state = await sync_to_async(_transaction_state)(alias)
    if state is not None:
        # Already in a transaction (an enclosing atomic in the caller): the
        # async driver cannot join it safely; it never happens under Django's
        # ASGI handler, which refuses ATOMIC_REQUESTS for async views.
        raise RuntimeError(state)
    atomic = transaction.atomic(using=alias)

    def enter() -> Any:
        atomic.__enter__()
        return connections[alias].connection  # what _atomic_failure compares

    started_on = await sync_to_async(enter)()
    view_returned = False
    try:
        response = await handler(attempt.request, *args, **kwargs)
        view_returned = True

        def store_in_transaction() -> tuple[HttpResponseBase, store.StoredResponse | None]:
            rendered = _rendered(attempt.view, attempt.request, response, args, kwargs)
            # connections[] is per thread: looked up here, in the request's thread.
            connection = connections[alias]
            stored = _store_or_release(
                connection, claim, rendered, attempt.request_id, attempt.options
            )
            return rendered, stored

        response, stored = await sync_to_async(store_in_transaction)()
    except BaseException as exc:
        await sync_to_async(atomic.__exit__)(type(exc), exc, exc.__traceback__)
        return await sync_to_async(_atomic_failure)(
            attempt,
            claim,
            exc,
            view_returned=view_returned,
            in_caller=False,
            started_on=started_on,
            after_commit=after_commit,
        )
    try:
        await sync_to_async(atomic.__exit__)(None, None, None)  # COMMIT
    except BaseException as exc:
        return await sync_to_async(_atomic_failure)(
            attempt,
            claim,
            exc,
            view_returned=True,
            in_caller=False,
            started_on=started_on,
            after_commit=after_commit,
        )
    await sync_to_async(after_commit)(claim, stored)
    return first_answer_headers(attempt, claim, response)


def _transaction_state(alias: str) -> str | None:
    connection = connections[alias]
    if in_caller_transaction(connection):
        return (
            "atomic=True on an async view inside an open transaction: the async "
            "driver only opens its own"
        )
    return None
