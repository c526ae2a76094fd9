"""The records list in a real browser: at 1400 px with the navigation sidebar
open, the status and time columns stay on screen.

Needs Playwright for Python and a Chromium on PATH (Debian's ``chromium``);
skipped without them. The page is rendered by the test client and served to
the browser through request interception, with the admin's own static files,
so no server thread shares the test database.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import os
import shutil
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_idempotency.models import State

from .factories import CLIENT_SCOPE, RecordFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs the browser: there a missing one is a failure, not a skip.
if os.environ.get("IDEMPOTENCY_REQUIRE_BROWSER") == "1":
    from playwright import sync_api

    assert CHROMIUM, "IDEMPOTENCY_REQUIRE_BROWSER=1 but no chromium on PATH"
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH"),
]

ORIGIN = "http://testserver"
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
CHANGELIST = "admin:django_idempotency_idempotencyrecord_changelist"

#: The columns a developer reads first; the rest may be shortened, not these.
MUST_SHOW = ("field-status", "field-created", "field-expires")

_MEASURE = """
(classes) => {
    const box = document.querySelector('#changelist-form .results').getBoundingClientRect();
    const right = Math.min(box.right, document.documentElement.clientWidth);
    const sidebar = document.getElementById('nav-sidebar');
    const clipped = [];
    for (const name of classes) {
        const cells = document.querySelectorAll(`#result_list .${name}`);
        if (!cells.length) clipped.push(`${name}: no such column`);
        for (const cell of cells) {
            const r = cell.getBoundingClientRect();
            if (r.right > right + 0.5 || r.left < box.left - 0.5 || r.width < 1) {
                const text = cell.textContent.trim();
                clipped.push(`${name} ${text}: ${r.left}-${r.right} of ${right}`);
            }
        }
    }
    return {clipped, sidebar: sidebar ? sidebar.getBoundingClientRect().width : 0};
}
"""


def _records() -> None:
    now = timezone.now()
    user = UserFactory(username="a.rather.long.username@customers.example.com")
    # Values as long as production ones get: UUID and 200-character keys,
    # hashed credential scopes, deep paths.
    RecordFactory(
        key="k" * 200,
        scope=CLIENT_SCOPE,
        method="DELETE",
        path="/api/v1/customers/1234567/payment-methods/987654321/refunds/" + "x" * 60,
        response_status=409,
    )
    RecordFactory(
        key="3f1c2a9e-4b7d-4f0e-9a53-0c6de1b2f8aa",
        scope=f"user:{user.pk}",
        state=State.IN_PROGRESS,
        response_status=None,
        completed_at=None,
        locked_until=now - dt.timedelta(seconds=5),
    )
    RecordFactory(
        created_at=now - dt.timedelta(days=3),
        expires_at=now - dt.timedelta(days=2),
        scope="tenant:acme-industries-international/service-account:billing-exporter",
    )


def _serve(pages: dict[str, str]) -> Any:
    def handle(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path in pages:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=pages[path])
            return
        if path.startswith("/static/"):
            file = ADMIN_STATIC / path.removeprefix("/static/")
            if file.is_file():
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                route.fulfill(status=200, content_type=kind, body=file.read_bytes())
                return
        route.fulfill(status=404, body="")

    return handle


def test_status_and_times_fit_at_1400_px_with_the_sidebar_open(settings: Any) -> None:
    settings.STATIC_URL = "/static/"
    _records()
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    path = reverse(CHANGELIST)
    html = client.get(path).content.decode()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'true')")
            page.route(f"{ORIGIN}/**", _serve({path: html}))
            page.goto(ORIGIN + path, wait_until="load")
            result = page.evaluate(_MEASURE, list(MUST_SHOW))
        finally:
            browser.close()

    assert result["sidebar"] > 100, "the navigation sidebar should be open"
    assert result["clipped"] == []
