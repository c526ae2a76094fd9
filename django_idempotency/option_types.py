"""The keyword options of ``@idempotent`` and ``idempotency_options``, as a type.

With it, mypy and editors reject a misspelled option or a value of the wrong
type where the view is written; ``options.SPECS`` still validates at run time
(with the same names: a test holds the two together).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypedDict

from rest_framework.request import Request

#: A timedelta, or seconds.
Duration = timedelta | int | float


class IdempotencyOptions(TypedDict, total=False):
    header: str
    required: bool
    methods: Iterable[str]
    key_min_length: int
    key_max_length: int
    key_pattern: str | re.Pattern[str]
    ttl: Duration
    scope: Callable[[Request], str] | str | None
    per_endpoint: bool
    fingerprint: Callable[[Request], str | bytes] | str | None
    replay_status: int | None
    replayed_header: str | None
    request_id_header: str | None
    expiry_header: str | None
    mismatch_status: int
    store_server_errors: bool
    max_response_bytes: int
    lock_timeout: Duration
    wait: Duration
    atomic: bool
