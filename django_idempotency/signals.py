"""Signals for metrics. Each is sent with ``request`` (the DRF request), ``key``
and ``record_id`` (None where no record exists); the sender is the view class.
"""

from django.dispatch import Signal

#: A stored response was replayed.
idempotency_replayed = Signal()
#: A key was reused with a different request (answered with ``mismatch_status``).
idempotency_conflict = Signal()
#: A retry arrived while the first request was still running (answered 409).
idempotency_in_progress = Signal()
#: A response was stored for replay.
idempotency_stored = Signal()
