"""The benchmarked endpoint, once per protection, all with the same body.

Every variant authenticates, checks permissions, validates with a serializer
and inserts one row, so the only difference between two URLs is the
idempotency layer in front of the handler.
"""

import hashlib
import threading
import time
from contextlib import nullcontext
from typing import Any

from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import FloorRecord, Order

#: Lets the in-progress scenario park one request inside the view while the
#: duplicates are measured from another thread.
hold_entered = threading.Event()
hold_release = threading.Event()
#: How long a parked request waits at most: a peer whose duplicates wait for
#: it must not hang the benchmark.
HOLD_SECONDS = [30.0]

#: Which half of the floor runs: "claim" (INSERT, view, UPDATE) for first
#: requests, "lookup" (one SELECT) for replays, mismatches and in-progress.
FLOOR = {"mode": "claim"}


class OrderSerializer(serializers.ModelSerializer[Order]):
    class Meta:
        model = Order
        fields = ["id", "amount", "note"]


#: How many times the view body ran in this process: a replay that runs it
#: again shows up here, whatever the answer looks like.
RUNS = [0]


def create_order(request: Any) -> Response:
    RUNS[0] += 1
    if request.META.get("HTTP_X_HOLD"):
        hold_entered.set()
        hold_release.wait(HOLD_SECONDS[0])
    slow = request.META.get("HTTP_X_SLOW")
    if slow:
        # Widens the race window for the concurrency check: every duplicate
        # arrives while the first is still inside the view.
        time.sleep(float(slow))
    serializer = OrderSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    serializer.save(owner_id=request.user.pk)
    return Response(serializer.data, status=status.HTTP_201_CREATED)


class PlainOrders(APIView):
    def post(self, request: Any) -> Response:
        return create_order(request)


_TABLE = FloorRecord._meta.db_table


def _floor(view: APIView, request: Any, atomic: bool) -> Any:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return create_order(request)
    lookup = hashlib.sha256(f"{request.user.pk}\0{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(request.body).hexdigest()
    # Over HTTP (http_run.py) the client picks the half with a header: the
    # server's processes cannot be told in-process.
    if request.META.get("HTTP_X_FLOOR_MODE", FLOOR["mode"]) == "lookup":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT fingerprint, status, body FROM {_TABLE} WHERE lookup_hash = %s", [lookup]
            )
            row = cursor.fetchone()
        if row is not None:
            if row[0] != fingerprint:
                return JsonResponse({"code": "idempotency_key_reused"}, status=422)
            if row[1] is None:
                return JsonResponse({"code": "idempotency_request_in_progress"}, status=409)
            return HttpResponse(bytes(row[2]), status=row[1], content_type="application/json")
    with transaction.atomic() if atomic else nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_TABLE} (lookup_hash, fingerprint) VALUES (%s, %s) RETURNING id",
                [lookup, fingerprint],
            )
            record_id = cursor.fetchone()[0]
        response = view.finalize_response(request, create_order(request))
        response.render()
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_TABLE} SET status = %s, body = %s WHERE id = %s",
                [response.status_code, response.content, record_id],
            )
    return response


class FloorOrders(APIView):
    def post(self, request: Any) -> Any:
        return _floor(self, request, atomic=False)


class FloorAtomicOrders(APIView):
    def post(self, request: Any) -> Any:
        return _floor(self, request, atomic=True)
