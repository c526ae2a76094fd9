"""The one engine behind ``@idempotent`` and ``IdempotencyMixin``.

It runs in place of the DRF handler, after ``APIView.initial()`` has
authenticated, checked permissions and throttled, so a replay is never served
to a caller the view itself would refuse.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.dispatch import Signal
from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import cache_lock, conf, signals, store, waiting
from .connections import claim_connection, in_caller_transaction, snapshot_isolation
from .exceptions import (
    IdempotencyError,
    KeyMissing,
    KeyReused,
    NotMigrated,
    RecordUnreadable,
    RequestInProgress,
    RequestUnrecordable,
    Unavailable,
)
from .identity import endpoint_of, fingerprints_of, lookup_hash, request_id_of, scope_of
from .keys import parse_key
from .models import State
from .options import OptionError, Options, validate_options
from .responses import advertise_first_expiry, replay, storable_headers, unstorable_reason

logger = logging.getLogger("django_idempotency")

Handler = Callable[..., HttpResponseBase]

#: How often a claim is retried when the row it conflicted with changed under it.
_CLAIM_ATTEMPTS = 3

#: When storing after the view fails because the connection broke (a server
#: restart, a proxy or failover dropping it), the store is tried again on a
#: new connection after each of these pauses. The view's effects are
#: committed by then, and a record left in progress would let a retry run
#: them again after lock_timeout; the UPDATE only ever applies to our own
#: claim (its token), so sending it twice is safe.
STORE_RETRY_PAUSES = (0.0, 0.5, 1.5)

#: The claim on a connection that broke (a database restart or failover, a
#: proxy dropping it, a waiting duplicate's connection cut while it waited) is
#: tried again at once on a new one: nothing ran yet, so a second failure
#: answers 503 and the client's own retry takes it from there.
CLAIM_RETRY_PAUSES = (0.0,)

# Between two tries of the store; a test moves its clock instead.
_sleep = time.sleep


class ViewOptions:
    """Per-view options, validated once at decoration time and merged with the
    settings on first use (again after ``IDEMPOTENCY`` changes)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        try:
            self.overrides = validate_options(raw)
        except OptionError as exc:
            raise ImproperlyConfigured(f"idempotency options: {exc}") from None
        self._resolved: Options | None = None
        self._generation = -1
        if settings.configured and conf.setting_is_valid():
            # Report impossible combinations (with the settings in force) at
            # import time, not on the first request. A broken IDEMPOTENCY
            # setting is left to check E001: raising here, while the URLconf
            # is imported, would hide it behind a traceback.
            self.get()

    def get(self) -> Options:
        if self._resolved is None or self._generation != conf.generation:
            self._resolved = conf.resolve(self.overrides)
            self._generation = conf.generation
        return self._resolved


class _Fenced(Exception):
    """Our claim was taken over while the view ran; its result must not count."""


@dataclass(frozen=True)
class Attempt:
    """One request that carries a valid key, from its claim to its answer."""

    view: APIView
    request: Request
    options: Options
    key: str
    request_id: str
    new: store.NewRecord
    alias: str

    @property
    def sender(self) -> type[APIView]:
        return type(self.view)


def handle(
    view: APIView,
    request: Request,
    handler: Handler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
) -> HttpResponseBase:
    """The life of a request: claim the key, run the view, store or release,
    answer. Duplicates are answered from Redis or from the record instead."""
    if request.method not in options.methods:
        return handler(request, *args, **kwargs)
    started = _start(view, request, options)
    if started is None:  # no key, and none required: the view runs unprotected
        return handler(request, *args, **kwargs)
    if isinstance(started, HttpResponseBase):  # a key we refuse
        return started
    attempt = started
    if not options.wait or not waiting.may_wait_on(attempt.alias):
        response = _serve(attempt, handler, args, kwargs, None)
        assert response is not None
        return response
    waiter = waiting.Waiter(options.wait, attempt.new.lookup_hash, attempt.alias)
    while True:
        response = _serve(attempt, handler, args, kwargs, waiter)
        if response is not None:
            return response
        # In progress: wait between statements, holding no transaction or lock.
        waiter.pause()


def _serve(
    attempt: Attempt,
    handler: Handler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    waiter: waiting.Waiter | None,
) -> HttpResponseBase | None:
    """One look at the key: the answer, or None when ``waiter`` is to wait
    for the request that holds it and look again."""
    if waiter is not None:
        waiter.looking()
    front = _redis_front(attempt)
    if front is not None:
        fast = front.check(store.new_token())
        if fast is not None:  # held or cached in Redis
            if cache_lock.answers_alone(fast):  # the database is not asked
                stored = fast.response
                return _answer(attempt, same_request=fast.same_request, stored=stored)
            # A lock held for this same request: its holder tells the waiters.
            if waiter and fast.same_request and waiter.may_wait():
                return None  # whoever holds the lock tells the waiters when it is done
    elif waiter is not None and waiter.paused and waiter.may_wait() and still_running(attempt):
        return None
    handed_over = False  # once _run returns, it has seen to the Redis front
    claimed = False  # the key is ours in the database: its release changes it
    try:
        outcome = _claim_or_problem(attempt)
        if isinstance(outcome, HttpResponseBase):
            return outcome
        if isinstance(outcome, store.Existing):
            if waiter and waiting_pays(outcome) and waiter.may_wait():
                return None  # the finally drops a Redis lock we may have taken
            return _answer_existing(attempt, outcome, front)
        claimed = True
        response = _run(
            attempt,
            outcome,
            handler,
            args,
            kwargs,
            after_commit=functools.partial(_after_commit, attempt, front),
        )
        handed_over = True
        return response
    finally:
        if front is not None and not handed_over:
            front.forget(changed=claimed)


def still_running(attempt: Attempt) -> bool:
    """A waiting duplicate's look after a pause: one SELECT, no write. True
    while the same request still runs and may not be taken over; anything
    else (or a failing read) goes through the claim, which decides."""
    try:
        connection, _ = claim_connection(attempt.alias)
        found = store.fetch(connection, attempt.new)
    except DatabaseError:
        return False
    return found is not None and waiting_pays(found) and not should_take_over(found)


def _start(view: APIView, request: Request, options: Options) -> Attempt | HttpResponseBase | None:
    """Read the key and describe the record it would claim; a problem
    response for a key we refuse, None when there is no key and none is needed."""
    raw_key = request.headers.get(options.header)
    request_id = request_id_of(request, options)
    if raw_key is None:
        return _problem(KeyMissing(), request_id, options) if options.required else None
    try:
        key = parse_key(raw_key, options)
        endpoint = endpoint_of(request)
        # AnonymousKey, or any IdempotencyError a scope callable raises.
        scope = scope_of(request, options)
    except IdempotencyError as exc:
        return _problem(exc, request_id, options)
    new = store.NewRecord(
        lookup_hash=lookup_hash(scope, key, endpoint if options.per_endpoint else None),
        key=key,
        scope=scope,
        endpoint=endpoint,
        method=request.method or "",
        path=request.path,
        fingerprints=fingerprints_of(request, endpoint, options),
        request_id=request_id,
        ttl=options.ttl,
        lock_timeout=options.lock_timeout,
    )
    if not store.storable(new):
        # Not an outage: the client sent what no column can hold. A 503 here
        # would let any caller fake a database alarm and retry forever.
        logger.info("Idempotency record not storable for %s; answering 400", endpoint)
        return _problem(RequestUnrecordable(), request_id, options)
    alias = conf.get_settings().database_for(scope)
    return Attempt(view, request, options, key, request_id, new, alias)


def _redis_front(attempt: Attempt) -> cache_lock.RedisFront | None:
    app_settings = conf.get_settings()
    if app_settings.lock != "cache":
        return None
    return cache_lock.RedisFront(
        app_settings.cache_alias,
        attempt.new.lookup_hash,
        attempt.new.fingerprints,
        ttl=attempt.options.ttl,
        lock_timeout=attempt.options.lock_timeout,
        publish=bool(attempt.options.wait),
    )


def _claim_or_problem(attempt: Attempt) -> store.Claim | store.Existing | HttpResponseBase:
    """The claim, the record that answers for the key, or why neither (500/503)."""
    alias = attempt.alias
    try:
        return _claim(alias, attempt.new)
    except DatabaseError as exc:
        if store.refused_as_unrecordable(connections[alias], exc):
            logger.info(
                "Idempotency record not storable for %s (%s); answering 400",
                attempt.new.endpoint,
                exc,
            )
            return _problem(RequestUnrecordable(), attempt.request_id, attempt.options)
        if not _table_exists(alias):
            # Permanent: a 503 with Retry-After would have clients retry forever.
            logger.error(
                "The idempotency records table is missing on database %r: run '%s'. Answering 500.",
                alias,
                store.migrate_command(alias),
            )
            return _problem(NotMigrated(), attempt.request_id, attempt.options)
        logger.exception(
            "Could not claim idempotency key for %s; answering 503", attempt.new.endpoint
        )
        return _problem(Unavailable(), attempt.request_id, attempt.options)


def _after_commit(
    attempt: Attempt,
    front: cache_lock.RedisFront | None,
    claim: store.Claim,
    stored: store.StoredResponse | None,
) -> None:
    """Runs once the record's outcome is committed, never before: Redis must
    not replay what a rolled-back transaction never stored."""
    if stored is not None:
        _notify(
            signals.idempotency_stored,
            attempt.sender,
            request=attempt.request,
            key=attempt.key,
            record_id=claim.record_id,
        )
    if front is not None:
        front.finish(stored, fresh=claim.fresh)


def _answer_existing(
    attempt: Attempt, found: store.Existing, front: cache_lock.RedisFront | None = None
) -> HttpResponseBase:
    """Answer for the record that holds the key: mismatch, replay or in progress.

    A replay the Redis ``front`` did not have is cached there for the next
    duplicates."""
    try:
        stored = replayable(found)
    except RecordUnreadable as exc:  # sealed under a key no longer configured
        return _problem(exc, attempt.request_id, attempt.options)
    if front is not None and stored is not None:
        front.cache_replay(stored)
    return _answer(
        attempt, same_request=found.same_request, stored=stored, record_id=found.record_id
    )


# Decisions: no I/O, so the drivers (sync today) share them. -----------------------


def replayable(found: store.Existing) -> store.StoredResponse | None:
    """What a duplicate gets replayed: the stored response, once there is one
    (a different request is never replayed, so its record is not opened)."""
    if found.state != State.COMPLETED or not found.same_request:
        return None
    return store.stored_response(found)


def waiting_pays(found: store.Existing) -> bool:
    """Is this record what a waiting duplicate waits out: the same request,
    still running? (Anything else is answered at once.)"""
    return found.same_request and found.state != State.COMPLETED


def should_take_over(found: store.Existing) -> bool:
    """May a new request replace this record (expired and nobody working on
    it) or take over its claim (the same request, its worker gone)?"""
    running = found.state != State.COMPLETED
    if found.expired and not (running and not found.abandoned):
        return True
    return found.same_request and running and found.abandoned


def _answer(
    attempt: Attempt,
    *,
    same_request: bool,
    stored: store.StoredResponse | None,
    record_id: int | None = None,
) -> HttpResponseBase:
    """Answer a request whose key is already taken: mismatch, replay or in progress.

    ``record_id`` is None when Redis answered (the record was not read).
    """
    options = attempt.options
    signal_kwargs = {"request": attempt.request, "key": attempt.key, "record_id": record_id}
    if not same_request:
        logger.info("Idempotency key reused with another request (record %s)", record_id)
        _notify(signals.idempotency_conflict, attempt.sender, **signal_kwargs)
        return _problem(KeyReused(status=options.mismatch_status), attempt.request_id, options)
    if stored is None:
        logger.debug("Idempotency key still in progress (record %s)", record_id)
        _notify(signals.idempotency_in_progress, attempt.sender, **signal_kwargs)
        return _problem(RequestInProgress(), attempt.request_id, options)
    _notify(signals.idempotency_replayed, attempt.sender, **signal_kwargs)
    logger.debug("Replaying idempotency key (record %s)", record_id)
    response = replay(stored, options)
    if options.request_id_header:
        response[options.request_id_header] = stored.request_id
    return response


def _claim(alias: str, new: store.NewRecord) -> store.Claim | store.Existing:
    """Claim the key, or return the record that answers for it."""
    connection, _ = claim_connection(alias)
    # One token for every try: a claim the database committed just before
    # the connection broke, its answer lost, is then recognised as ours.
    token = store.new_token()
    reconnects = iter(CLAIM_RETRY_PAUSES)
    attempts = 0
    while attempts < _CLAIM_ATTEMPTS:
        try:
            found = store.insert_or_fetch(connection, new, token)
        except (OperationalError, InterfaceError):
            # A refusal on a working connection (a timeout, a trigger, a
            # deadlock) is the database's answer: 503, not a second try.
            # Inside a transaction a broken connection took it with it.
            if connection.in_atomic_block or not _connection_broke(connection):
                raise
            pause = next(reconnects, None)
            if pause is None:
                raise
            logger.warning(
                "Could not claim idempotency key for %s; trying again on a new connection",
                new.endpoint,
                exc_info=True,
            )
            _reconnect(connection, pause)
            continue
        attempts += 1
        if found is None:  # deleted between our INSERT and SELECT: try again
            continue
        if isinstance(found, store.Claim):
            return found
        if found.token == token and found.state != State.COMPLETED:
            return store.Claim(
                found.record_id, token, lookup_hash=new.lookup_hash, expires_at=found.expires_at
            )
        if should_take_over(found):
            taken = store.take_over(connection, new, found)
            if taken is not None:
                if not found.expired:
                    logger.warning(
                        "Took over abandoned idempotency record %s (its claim timed out)",
                        found.record_id,
                    )
                return taken
            continue  # another retry won the takeover: look again
        return found
    # Rows that keep changing under us: a storm of racing retries. Say so.
    raise DatabaseError("idempotency record kept changing while claiming")


def _run(
    attempt: Attempt,
    claim: store.Claim,
    handler: Handler,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    after_commit: Callable[[store.Claim, store.StoredResponse | None], None],
) -> HttpResponseBase:
    """Run the view under our claim, finish the record, and see that
    ``after_commit`` runs once what was stored is committed."""
    view, request, options = attempt.view, attempt.request, attempt.options
    alias, request_id = attempt.alias, attempt.request_id
    connection = connections[alias]
    in_caller = in_caller_transaction(connection)
    # PostgreSQL at REPEATABLE READ or SERIALIZABLE: the caller's transaction
    # took its snapshot before our claim was committed on the side connection,
    # so it cannot see (nor complete) the record. Finish it after the caller
    # commits; if the caller rolls back, the claim expires after lock_timeout.
    defer = in_caller and snapshot_isolation(connection)

    def done(stored: store.StoredResponse | None) -> None:
        if in_caller:
            transaction.on_commit(lambda: after_commit(claim, stored), using=alias)
        else:
            after_commit(claim, stored)

    def store_after_commit(response: HttpResponseBase) -> None:
        def complete() -> None:
            after_commit(claim, _store_after_view(alias, claim, response, request_id, options))

        transaction.on_commit(complete, using=alias)

    def run_view() -> HttpResponseBase:
        response = handler(request, *args, **kwargs)
        return _rendered(view, request, response, args, kwargs)

    if options.atomic:
        view_returned = False
        started_on = connection.connection  # the claim ran on it: connected
        try:
            with transaction.atomic(using=alias):
                response = run_view()
                view_returned = True
                if defer:
                    store_after_commit(response)
                else:
                    # Inside the transaction: the record and the view's writes
                    # commit together. Done last, so duplicates never wait on
                    # this row lock for longer than the commit.
                    stored = _store_or_release(connection, claim, response, request_id, options)
        except BaseException as exc:
            return _atomic_failure(
                attempt,
                claim,
                exc,
                view_returned=view_returned,
                in_caller=in_caller,
                started_on=started_on,
                after_commit=after_commit,
            )
        if not defer:
            done(stored)
    else:
        try:
            response = run_view()
        except BaseException:
            # Any exception (validation errors, bugs, a worker's SystemExit on
            # timeout): the operation did not complete, so a retry may run it.
            _release_quietly(alias, claim, notify=_notifies(options, alias))
            raise
        if defer:
            store_after_commit(response)
        else:
            done(_store_after_view(alias, claim, response, request_id, options, in_caller))

    return first_answer_headers(attempt, claim, response)


def first_answer_headers(
    attempt: Attempt, claim: store.Claim, response: HttpResponseBase
) -> HttpResponseBase:
    """The headers every driver adds to the answer of the request that ran the view."""
    if attempt.options.request_id_header:
        response[attempt.options.request_id_header] = attempt.request_id
    advertise_first_expiry(response, attempt.options, claim.expires_at)
    return response


def _atomic_failure(
    attempt: Attempt,
    claim: store.Claim,
    exc: BaseException,
    *,
    view_returned: bool,
    in_caller: bool,
    started_on: Any,
    after_commit: Callable[[store.Claim, store.StoredResponse | None], None],
) -> HttpResponseBase:
    """The atomic block around the view was rolled back by ``exc``: answer,
    or raise ``exc`` again (the view's own errors, as without the app).

    ``started_on``: the driver connection the atomic block began on. If it
    broke (a restart, a failover, a proxy cutting it), Django dropped it and
    opened another as the block ended: the view's transaction is gone, so
    nothing of it was kept and the client may retry. A 503 says so where the
    view's own error would be a 500. (Not inside the caller's transaction:
    the whole request is lost with it there.)"""
    alias, request_id, options = attempt.alias, attempt.request_id, attempt.options
    if isinstance(exc, _Fenced):
        # Another request took the claim over and runs the view: ours was
        # rolled back, so the operation still happens exactly once.
        after_commit(claim, None)
        return _problem(RequestInProgress(), request_id, options)
    notify = _notifies(options, alias)
    connection = connections[alias]
    lost = (
        isinstance(exc, DatabaseError)
        and not in_caller
        and (connection.connection is not started_on or _connection_broke(connection))
    )
    if not (view_returned and isinstance(exc, DatabaseError)) and not lost:
        _release_quietly(alias, claim, notify=notify)
        raise exc
    if view_returned:
        # Storing or committing failed, so nothing of the view was kept (a
        # commit that did happen left the record completed, which the release
        # below never deletes).
        logger.error("Could not store idempotency record %s", claim.record_id, exc_info=exc)
    else:
        logger.error(
            "The database connection broke while the view of idempotency record %s ran "
            "in atomic mode; its transaction was rolled back. Answering 503",
            claim.record_id,
            exc_info=exc,
        )
    if in_caller:
        # Our savepoint rolled back, but InnoDB keeps its row locks until the
        # caller's transaction ends: releasing from the other connection now
        # would wait on them.
        transaction.on_commit(lambda: _release_quietly(alias, claim, notify=notify), using=alias)
    else:
        _release_quietly(alias, claim, notify=notify)
    after_commit(claim, None)
    return _problem(Unavailable(), request_id, options)


def _store_after_view(
    alias: str,
    claim: store.Claim,
    response: HttpResponseBase,
    request_id: str,
    options: Options,
    savepoint: bool = False,
) -> store.StoredResponse | None:
    """Outside atomic mode the view's effects are committed: store its answer,
    and if that fails keep the claim, so no retry runs the view again before
    lock_timeout. The client gets the real result either way."""
    connection = connections[alias]
    # Inside the caller's transaction a broken connection has lost the
    # caller's writes too: nothing is left that a new connection could save.
    pauses = iter(() if savepoint else STORE_RETRY_PAUSES)
    tries = 1
    while True:
        try:
            if savepoint:
                # A failure here must not abort the caller's transaction.
                with transaction.atomic(using=alias):
                    return _store_or_release(connection, claim, response, request_id, options)
            return _store_or_release(connection, claim, response, request_id, options)
        except _Fenced:
            logger.warning(
                "Idempotency record %s: its view ran longer than lock_timeout and its "
                "claim is gone (taken over by a retry, or deleted by the purge or an "
                "admin)%s; the response was not stored",
                claim.record_id,
                "" if tries == 1 else ", or the store before the connection broke went through",
            )
        except (OperationalError, InterfaceError):
            pause = next(pauses, None)
            if pause is not None and not connection.in_atomic_block:
                logger.warning(
                    "Could not store idempotency record %s; trying again on a new connection",
                    claim.record_id,
                    exc_info=True,
                )
                _reconnect(connection, pause)
                tries += 1
                continue
            logger.exception(
                "Could not store idempotency record %s after %d tries; its key stays "
                "locked until lock_timeout",
                claim.record_id,
                tries,
            )
        except Exception:
            logger.exception(
                "Could not store idempotency record %s; its key stays locked until lock_timeout",
                claim.record_id,
            )
        return None


def _connection_broke(connection: Any) -> bool:
    """After a failed statement: is the connection itself gone?"""
    try:
        return connection.connection is None or not connection.is_usable()
    except Exception:
        return True


def _reconnect(connection: Any, pause: float) -> None:
    """Drop a connection that failed, so that its next use opens a new one."""
    # Closing a broken connection can fail; Django forgets it all the same.
    with contextlib.suppress(DatabaseError):
        connection.close()
    if pause:
        _sleep(pause)


def _rendered(
    view: APIView,
    request: Request,
    response: HttpResponseBase,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> HttpResponseBase:
    """Render now, as DRF would later, so the bytes we store are the bytes sent.

    ``finalize_response`` attaches the negotiated renderer; calling it again
    later (DRF does, after the handler) changes nothing, and Django skips
    ``render()`` on a response that is already rendered.
    """
    if isinstance(response, Response):
        response = view.finalize_response(request, response, *args, **kwargs)
    if not getattr(response, "is_rendered", True):
        response.render()  # type: ignore[attr-defined]  # any TemplateResponse
    return response


def _store_or_release(
    connection: Any,
    claim: store.Claim,
    response: HttpResponseBase,
    request_id: str,
    options: Options,
) -> store.StoredResponse | None:
    """Store the response or, if it must not be stored, release the key."""
    reason = unstorable_reason(response, options)
    if reason is not None:
        # A retry of an oversized or streaming answer runs the view again: say
        # so. 5xx answers are logged by Django already.
        if reason != "server error":
            logger.warning("Idempotency record %s not stored: %s", claim.record_id, reason)
        store.release(connection, claim, notify=_notifies(options, connection.alias))
        return None
    stored = store.StoredResponse(
        status=response.status_code,
        headers=storable_headers(response, options),
        body=response.content,  # type: ignore[attr-defined]
        request_id=request_id,
        expires_at=claim.expires_at,
    )
    if not store.complete(connection, claim, stored, notify=_notifies(options, connection.alias)):
        raise _Fenced
    return stored


def _table_exists(alias: str) -> bool:
    """After a failed claim: True unless the table is known to be missing (an
    unreachable database counts as an outage, not as a missing table)."""
    try:
        connection, _ = claim_connection(alias)
        return store.table_exists(connection)
    except DatabaseError:
        return True


def _notifies(options: Options, alias: str) -> bool:
    """Does storing or releasing send NOTIFY (duplicates may wait on PostgreSQL)?"""
    return bool(options.wait) and waiting.notify_postgresql(options.wait, alias)


def _release_quietly(alias: str, claim: store.Claim, *, notify: bool = False) -> None:
    """Release on the claiming connection: it commits even when the caller's
    transaction is about to roll back. A failure leaves the claim to expire.
    ``notify``: wake the duplicates waiting on PostgreSQL."""
    for last_try in (False, True):
        connection = None
        try:
            # Inside the try: finding the connection may itself need the
            # database (a reconnect to a server that is gone).
            connection, _ = claim_connection(alias)
            store.release(connection, claim, notify=notify)
            return
        except DatabaseError:
            # The view failed because the connection broke (so did the
            # release): a new connection frees the key now, not after
            # lock_timeout.
            if (
                not last_try
                and connection is not None
                and not connection.in_atomic_block
                and _connection_broke(connection)
            ):
                logger.warning(
                    "Could not release idempotency record %s; trying again on a new connection",
                    claim.record_id,
                    exc_info=True,
                )
                _reconnect(connection, 0.0)
                continue
            logger.exception(
                "Could not release idempotency record %s; it is freed after lock_timeout",
                claim.record_id,
            )
            return


def _notify(signal: Signal, sender: type[APIView], **kwargs: Any) -> None:
    """A failing metrics receiver must not turn a stored payment or a replay
    into a 500; Django logs its exception on the "django.dispatch" logger."""
    signal.send_robust(sender, **kwargs)


def _problem(error: IdempotencyError, request_id: str | None, options: Options) -> HttpResponseBase:
    response = error.as_response()
    if request_id and options.request_id_header:
        response[options.request_id_header] = request_id
    return response
