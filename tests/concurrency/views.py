"""Views for the concurrency tests. Each creates one Payment whose reference is
the idempotency key, so a test counts executions per key. The ``X-Sleep``
header (not part of the fingerprint) makes a request slow; ``X-Pid-Dir`` makes
the worker write its pid to a file there before sleeping, so a test can kill it.
``X-Hold`` names a file the view waits for before it answers: a test releases a
slow request when it has seen what it needs, so no machine is too slow for it.

The ``wait`` views (docs/recipes/wait.md) fail after their sleep when the
request carries ``X-Fail``, before creating anything.
"""

import asyncio
import os
import time
from pathlib import Path
from typing import Any, cast

from adrf.decorators import api_view as async_api_view
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency import idempotent, waiting
from tests.testapp.models import Payment

#: Hashed shards refuse atomic views where they are defined (tests/test_sharding.py):
#: the sharded servers serve these two views unprotected by atomic mode.
ATOMIC = os.environ.get("SERVER_SHARDED") != "1"

#: A held request answers anyway after this long, so a failed test cannot hang a worker.
HOLD_LIMIT = 60.0

if os.environ.get("SERVER_SAFETY_INTERVAL"):
    # test_wait's timing test: with a long safety look, a waiter whose wake-up
    # never came is answered at its deadline, far from any delay of a busy machine.
    waiting.SAFETY_INTERVAL = float(os.environ["SERVER_SAFETY_INTERVAL"])


def _work(request: Request) -> Response:
    key = request.headers.get("Idempotency-Key", "")
    payment = Payment.objects.create(
        amount=int(cast(dict[str, Any], request.data).get("amount", 1)), reference=key
    )
    pid_dir = request.headers.get("X-Pid-Dir")
    if pid_dir:
        Path(pid_dir, f"{key}.pid").write_text(str(os.getpid()))
    time.sleep(float(request.headers.get("X-Sleep", "0")))
    hold = request.headers.get("X-Hold")
    deadline = time.monotonic() + HOLD_LIMIT
    while hold and not Path(hold).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return Response({"id": payment.pk, "pid": os.getpid()}, status=201)


@api_view(["POST"])
@idempotent(lock_timeout=60)
def plain(request: Request) -> Response:
    return _work(request)


@api_view(["POST"])
@idempotent(lock_timeout=60, atomic=ATOMIC)
def atomic(request: Request) -> Response:
    return _work(request)


# The same operation as an adrf async view, served by uvicorn (SERVER_ASGI=1).
async def _work_async(request: Request) -> Response:
    key = request.headers.get("Idempotency-Key", "")
    payment = await Payment.objects.acreate(
        amount=int(cast(dict[str, Any], request.data).get("amount", 1)), reference=key
    )
    pid_dir = request.headers.get("X-Pid-Dir")
    if pid_dir:
        Path(pid_dir, f"{key}.pid").write_text(str(os.getpid()))
    await asyncio.sleep(float(request.headers.get("X-Sleep", "0")))
    hold = request.headers.get("X-Hold")
    deadline = time.monotonic() + HOLD_LIMIT
    while hold and not Path(hold).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return Response({"id": payment.pk, "pid": os.getpid()}, status=201)


@async_api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent(lock_timeout=60)
async def async_plain(request: Request) -> Response:
    return await _work_async(request)


@async_api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent(lock_timeout=60, atomic=ATOMIC)
async def async_atomic(request: Request) -> Response:
    return await _work_async(request)


def _fail_after_sleep(request: Request) -> Response:
    if request.headers.get("X-Fail"):
        time.sleep(float(request.headers.get("X-Sleep", "0")))
        raise RuntimeError("the first attempt fails")
    return _work(request)


@api_view(["POST"])
@idempotent(lock_timeout=60, wait=5)
def wait(request: Request) -> Response:
    return _fail_after_sleep(request)


@api_view(["POST"])
@idempotent(lock_timeout=60, wait=30)
def wait_long(request: Request) -> Response:
    return _work(request)


@async_api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent(lock_timeout=60, wait=30)
async def async_wait_long(request: Request) -> Response:
    return await _work_async(request)


@api_view(["POST"])
@idempotent(lock_timeout=60, wait=1)
def wait_short(request: Request) -> Response:
    return _work(request)


@async_api_view(["POST"])  # type: ignore[untyped-decorator]  # adrf has no type hints
@idempotent(lock_timeout=60, wait=5)
async def async_wait(request: Request) -> Response:
    if request.headers.get("X-Fail"):
        await asyncio.sleep(float(request.headers.get("X-Sleep", "0")))
        raise RuntimeError("the first attempt fails")
    return await _work_async(request)


@api_view(["GET"])
def waiters(request: Request) -> Response:
    """How many duplicates this worker process has waiting."""
    return Response({"pending": waiting.pending(), "pid": os.getpid()})
