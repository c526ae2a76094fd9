"""Demo-only request headers that make a view slow or fail, so that the
in-progress and failure paths can be seen from curl.

Headers are not part of the default fingerprint, so a retry without them is
still the same request.
"""

import time

from rest_framework.request import Request
from rest_framework.response import Response

DELAY_HEADER = "X-Demo-Delay"
FAIL_HEADER = "X-Demo-Fail"
_MAX_DELAY = 10.0
_FAILURES = {
    "500": "The card processor raised an internal error.",
    "502": "The upstream network answered with garbage.",
    "503": "The upstream network is unavailable.",
    "504": "The upstream network did not answer in time.",
}


def pause(request: Request) -> None:
    """Sleep for ``X-Demo-Delay`` seconds (at most 10), like a slow upstream call."""
    try:
        seconds = float(request.headers.get(DELAY_HEADER, 0))
    except ValueError:
        return
    time.sleep(min(max(seconds, 0.0), _MAX_DELAY))


def failure(request: Request) -> Response | None:
    """The error answer asked for by ``X-Demo-Fail: 500|502|503|504``, or None.

    Called before anything is written, as when an upstream call fails: the
    operation did not happen, so a retry may run it.
    """
    status = request.headers.get(FAIL_HEADER, "")
    if status not in _FAILURES:
        return None
    return Response({"error": _FAILURES[status]}, status=int(status))
