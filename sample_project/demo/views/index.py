"""The root URL: what each endpoint group reproduces and how it is configured."""

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from rest_framework.decorators import api_view, permission_classes, renderer_classes
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import asynctransfers, ietf, lithic, orzcash, stannp, txcloud

DOCS = "https://django-idempotency.readthedocs.io/en/latest/recipes/"

GROUPS: list[dict[str, Any]] = [
    {
        "name": "ietf",
        "reference": "The app's defaults: IETF draft 'The Idempotency-Key HTTP Header Field'",
        "behaviour": "Idempotency-Key on POST/PATCH, optional; 24 h per user; replays carry "
        "Idempotent-Replayed: true; another body is 422; a duplicate in flight is 409.",
        "endpoints": [
            "POST /ietf/payments/",
            "PATCH /ietf/payments/<id>/",
            "POST /ietf/payments/<id>/refund/",
            "GET /ietf/payments/",
        ],
        "options": ietf.OPTIONS,
        "docs": "https://django-idempotency.readthedocs.io/en/latest/http/",
    },
    {
        "name": "lithic",
        "reference": "https://docs.lithic.com/docs/idempotent-requests",
        "behaviour": "Idempotency-Key on POST, at most 255 characters; 24 h per account; "
        "replays the original status and response, 500s included; another body is an error.",
        "endpoints": [
            "POST /lithic/cards/",
            "POST /lithic/cards/<token>/renew/",
            "PATCH /lithic/cards/<token>/",
            "GET /lithic/cards/",
        ],
        "options": lithic.OPTIONS,
        "docs": DOCS + "lithic/",
    },
    {
        "name": "txcloud",
        "reference": "https://docs.txcloud.thetekcircle.io/concepts/idempotency",
        "behaviour": "Idempotency-Key of 10-255 [A-Za-z0-9_-]; 24 h per API key and endpoint; "
        "replays carry Idempotent-Replayed and the original X-Request-Id; another body "
        "is a 409 conflict; GET and DELETE ignore the key.",
        "endpoints": [
            "POST /txcloud/identity/verify",
            "POST /txcloud/identity/sessions",
            "GET /txcloud/identity/checks/<id>",
            "DELETE /txcloud/identity/checks/<id>",
        ],
        "options": txcloud.OPTIONS,
        "docs": DOCS + "txcloud/",
    },
    {
        "name": "stannp",
        "reference": "https://www.stannp.com/uk/direct-mail-api/idempotency-keys",
        "behaviour": "Optional X-Idempotency-Key of 10-1024 characters on POST; 24 h per "
        "account; replays the original body with status 409; only identical bodies match, "
        "another body is a new letter.",
        "endpoints": ["POST /stannp/letters/", "GET /stannp/letters/"],
        "options": stannp.OPTIONS,
        "docs": DOCS + "stannp/",
    },
    {
        "name": "orzcash",
        "reference": "https://sh8tl2g9yw.apifox.cn/doc-1898700",
        "behaviour": "Idempotency-Key required on every POST, a UUID; 24 h per account; "
        "replays the original response; another body is an error; a transient failure "
        "(5xx) is not stored, so the retry completes the transfer.",
        "endpoints": ["POST /orzcash/transfers/", "GET /orzcash/transfers/"],
        "options": orzcash.OPTIONS,
        "docs": DOCS + "orzcash/",
    },
    {
        "name": "async",
        "reference": "adrf async views (https://github.com/em1208/adrf), served by "
        "`make demo-asgi` under uvicorn",
        "behaviour": "The ORZCash transfer as an async view: Idempotency-Key required, a "
        "UUID; the same contract, and the app's queries never block the event loop.",
        "endpoints": ["POST /async/transfers/"],
        "options": asynctransfers.OPTIONS,
        "docs": DOCS + "async/",
    },
]


class _IndentedJSONRenderer(JSONRenderer):
    """The index is read by people, with curl: indent it."""

    def get_indent(self, accepted_media_type: str, renderer_context: Mapping[str, Any]) -> int:
        return 2


@api_view(["GET"])
@permission_classes([AllowAny])
@renderer_classes([_IndentedJSONRenderer, BrowsableAPIRenderer])
def index(request: Request) -> Response:
    return Response(
        {
            "name": "django-idempotency sample API",
            "authentication": "Authorization: Token <token>; `make demo` prints the demo "
            "users' tokens (or run `python manage.py demo_setup`).",
            "demo_headers": {
                "X-Demo-Delay": "seconds the operation takes (at most 10): try a duplicate "
                "while it runs",
                "X-Demo-Fail": "500, 502, 503 or 504: the operation fails before doing "
                "anything (lithic and orzcash)",
            },
            "openapi": {"schema": reverse("schema"), "swagger_ui": reverse("swagger-ui")},
            "groups": GROUPS,
        }
    )
