"""The default fingerprint compares what the client meant to send, not how
its HTTP library happened to encode it."""

import hashlib
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.factories import api_client
from tests.testapp.models import Payment

pytestmark = pytest.mark.django_db


def multipart(
    boundary: str, amount: str, file_content: bytes, file_type: str = "text/plain"
) -> bytes:
    lines = [
        f"--{boundary}",
        'Content-Disposition: form-data; name="amount"',
        "",
        amount,
        f"--{boundary}",
        'Content-Disposition: form-data; name="receipt"; filename="r.txt"',
        f"Content-Type: {file_type}",
        "",
        file_content.decode(),
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()


def send(
    client: APIClient,
    boundary: str,
    amount: str = "3",
    file_content: bytes = b"receipt",
    path: str = "/function/",
    file_type: str = "text/plain",
) -> Any:
    return client.generic(
        "POST",
        path,
        multipart(boundary, amount, file_content, file_type),  # type: ignore[arg-type]  # stubs: str; Django takes bytes
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_IDEMPOTENCY_KEY="upload-1",
    )


def test_multipart_retry_with_a_new_boundary_is_the_same_request() -> None:
    client = api_client()
    first = send(client, "boundaryAAA")
    retry = send(client, "boundaryBBB")
    assert first.status_code == 201
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1


def test_a_view_reading_the_raw_bytes_of_a_multipart_request_gets_them() -> None:
    client = api_client()
    first = send(client, "boundaryAAA", path="/raw-body/")
    assert first.status_code == 201, first.content
    assert (
        first.json()["sha256"]
        == hashlib.sha256(multipart("boundaryAAA", "3", b"receipt")).hexdigest()
    )
    retry = send(client, "boundaryBBB", path="/raw-body/")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert send(client, "boundaryCCC", amount="4", path="/raw-body/").status_code == 422
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(("amount", "file_content"), [("4", b"receipt"), ("3", b"another receipt")])
def test_multipart_with_other_fields_or_file_content_is_a_reuse(
    amount: str, file_content: bytes
) -> None:
    client = api_client()
    assert send(client, "boundaryAAA").status_code == 201
    reuse = send(client, "boundaryBBB", amount=amount, file_content=file_content)
    assert reuse.status_code == 422
    assert Payment.objects.count() == 1


def test_the_same_file_sent_as_another_media_type_is_a_reuse() -> None:
    client = api_client()
    assert send(client, "boundaryAAA").status_code == 201
    # Same name, same bytes: the view would store or serve them differently.
    reuse = send(client, "boundaryBBB", file_type="image/png")
    assert reuse.status_code == 422
    assert Payment.objects.count() == 1


def test_test_client_uploads_are_fingerprinted_by_content() -> None:
    client = api_client()
    upload = SimpleUploadedFile("r.txt", b"receipt")
    first = client.post("/function/", {"amount": 3, "receipt": upload}, HTTP_IDEMPOTENCY_KEY="u2")
    upload = SimpleUploadedFile("r.txt", b"receipt")
    retry = client.post("/function/", {"amount": 3, "receipt": upload}, HTTP_IDEMPOTENCY_KEY="u2")
    assert first.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"


def _send(client: APIClient, body: Any, content_type: str, key: str, **extra: Any) -> Any:
    return client.generic(
        "POST", "/function/", body, content_type=content_type, HTTP_IDEMPOTENCY_KEY=key, **extra
    )


def test_the_same_bytes_under_another_content_type_are_another_request() -> None:
    client = api_client()
    first = _send(client, b"amount=5", "application/x-www-form-urlencoded", "ct-1")
    assert first.status_code == 201
    other = _send(client, b"amount=5", "text/plain", "ct-1")
    assert other.status_code == 422
    assert Payment.objects.count() == 1


def test_json_and_a_form_with_the_same_bytes_are_different_requests() -> None:
    client = api_client()
    body = b'{"amount": 5}'
    assert _send(client, body, "application/json", "ct-2").status_code == 201
    assert _send(client, body, "application/x-www-form-urlencoded", "ct-2").status_code == 422
    # Letter case and spacing of the media type are not a difference.
    retry = _send(client, body, "Application/JSON", "ct-2")
    assert retry["Idempotent-Replayed"] == "true"


def test_a_json_retry_never_gets_the_browsable_api_page_stored_for_a_browser() -> None:
    client = api_client()
    page = _send(client, b'{"amount": 5}', "application/json", "acc-1", HTTP_ACCEPT="text/html")
    assert page.status_code == 201
    assert page["Content-Type"].startswith("text/html")
    retry = _send(
        client, b'{"amount": 5}', "application/json", "acc-1", HTTP_ACCEPT="application/json"
    )
    assert retry.status_code == 422
    assert not retry["Content-Type"].startswith("text/html")
    assert Payment.objects.count() == 1


def test_a_multipart_body_over_the_memory_limit_is_refused_to_a_body_reading_view_as_django_does(
    settings: Any,
) -> None:
    # Django refuses request.body over DATA_UPLOAD_MAX_MEMORY_SIZE with a 400;
    # the app streams the parts to fingerprint them, which must not turn
    # that into a 500 (RawPostDataException).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client = api_client()
    big = b"r" * 4096

    refused = send(client, "boundaryAAA", file_content=big, path="/raw-body/")

    assert refused.status_code == 400
    assert Payment.objects.count() == 0


def test_a_multipart_body_over_the_memory_limit_still_reaches_a_view_reading_its_data(
    settings: Any,
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client = api_client()
    big = b"r" * 4096

    first = send(client, "boundaryAAA", file_content=big)
    retry = send(client, "boundaryBBB", file_content=big)

    assert first.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert send(client, "boundaryCCC", file_content=big + b"!").status_code == 422
    assert Payment.objects.count() == 1
