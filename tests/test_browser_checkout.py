"""The sample project's checkout page (/checkout/) in a real browser.

A guest pays from headless Chromium, driven by Playwright, against the sample
project served over real HTTP in threads of this process; the payments are
counted in the database. The page sends every click and every retry, and the
key makes them one payment. A page served by a second server (another port:
another origin of the same site) calls the API with the CORS recipe of
docs/recipes/cors.md, and is blocked without it.

Needs Playwright for Python and Debian's Chromium; skipped without them,
failed without them when IDEMPOTENCY_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from corsheaders.defaults import default_headers
from django.core.handlers.wsgi import WSGIHandler
from django.template.loader import render_to_string

import sample_project.settings as sample_settings
from django_idempotency.models import IdempotencyRecord
from sample_project.demo.models import CheckoutPayment

#: Debian's package; nothing is downloaded.
CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
# CI installs the browser: there a missing one is a failure, not a skip.
if os.environ.get("IDEMPOTENCY_REQUIRE_BROWSER") == "1":
    from playwright import sync_api

    assert CHROMIUM, "IDEMPOTENCY_REQUIRE_BROWSER=1 but no /usr/bin/chromium"
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

pytestmark = [
    # The servers' threads have connections of their own: rows must be committed.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="no /usr/bin/chromium"),
]

#: Nothing may be downloaded or phone home while the tests run.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAYMENTS = "**/checkout/payments/"
#: Longer than the page's slowest path: four attempts with backoff, or a 409's
#: Retry-After of one second and the replay.
SETTLED = 15_000


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a double click needs two requests served at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Servers:
    """The API (the sample project) and a second origin that only serves the page."""

    def __init__(self) -> None:
        self._servers = [
            make_server(
                "127.0.0.1",
                0,
                self._not_yet,
                server_class=_ThreadingServer,
                handler_class=_QuietHandler,
            )
            for _ in range(2)
        ]
        self.api, self.page_origin = (f"http://127.0.0.1:{s.server_port}" for s in self._servers)

    @staticmethod
    def _not_yet(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise AssertionError("the servers were not started")

    def _page(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        # The same template as /checkout/, told where the API is: a static page.
        html = render_to_string("demo/checkout.html", {"api": self.api})
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [html.encode()]

    def start(self) -> None:
        """Serve, with the middleware of the settings in force now."""
        api, page = self._servers
        api.set_app(WSGIHandler())
        page.set_app(self._page)
        self._threads = [
            # A short poll: shutdown() waits for it, once per test.
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API keeps an event loop marked as running in this
    # thread, and Django refuses database queries under a running loop: the
    # test's own queries are synchronous code all the same.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            yield chromium
            chromium.close()


@pytest.fixture
def servers(settings: Any) -> Iterator[Servers]:
    settings.ROOT_URLCONF = "sample_project.urls"
    servers = Servers()
    yield servers
    servers.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.set_default_timeout(SETTLED)
    # expect() has a timeout of its own (5 s): a loaded machine needs more.
    sync_api.expect.set_options(timeout=SETTLED)
    yield page
    context.close()


def _cors_recipe(settings: Any, servers: Servers) -> None:
    """The sample project's CORS settings, for the page's origin."""
    settings.MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE]
    for name in ("CORS_URLS_REGEX", "CORS_ALLOW_CREDENTIALS", "CORS_ALLOW_HEADERS"):
        setattr(settings, name, getattr(sample_settings, name))
    settings.CORS_EXPOSE_HEADERS = sample_settings.CORS_EXPOSE_HEADERS
    settings.CORS_ALLOWED_ORIGINS = [servers.page_origin]
    settings.CSRF_TRUSTED_ORIGINS = [servers.page_origin]


def _keys(requests: list[Any]) -> list[str]:
    return [request.headers["idempotency-key"] for request in requests]


def _record_payment_requests(page: Any) -> list[Any]:
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/checkout/payments/") else None)
    return sent


def _answers(page: Any, count: int) -> None:
    """Until the page has logged ``count`` answers from the server."""
    sync_api.expect(page.locator("#log li", has_text="→ 201")).to_have_count(count)


def _drop_first_answer(page: Any) -> list[int]:
    """The first payment request reaches the server, its answer never the page."""
    dropped: list[int] = []
    routed: list[Any] = []

    def handle(route: Any) -> None:
        routed.append(route)  # before fetch(): a second click's request routes meanwhile
        if len(routed) > 1:
            route.continue_()
            return
        answer = route.fetch()
        dropped.append(answer.status)
        route.abort("connectionreset")

    page.route(PAYMENTS, handle)
    return dropped


def test_a_double_click_on_pay_makes_one_payment(servers: Servers, page: Any) -> None:
    servers.start()
    page.goto(servers.api + "/checkout/")
    sent = _record_payment_requests(page)

    page.dblclick("#pay")
    _answers(page, 2)

    assert len(sent) >= 2, "both clicks must reach the server"
    assert len(set(_keys(sent))) == 1
    assert CheckoutPayment.objects.count() == 1
    receipt = page.locator("#receipts li")
    sync_api.expect(receipt).to_have_count(1)
    sync_api.expect(receipt).to_contain_text("Paid €12.50")
    sync_api.expect(receipt).to_contain_text("2 answers, 1 replayed")
    assert receipt.get_attribute("data-payment") == str(CheckoutPayment.objects.get().pk)


def test_a_lost_answer_is_retried_and_shown_as_the_replay(servers: Servers, page: Any) -> None:
    servers.start()
    page.goto(servers.api + "/checkout/")
    sent = _record_payment_requests(page)
    dropped = _drop_first_answer(page)

    page.click("#pay")
    _answers(page, 1)

    assert dropped == [201], "the server made the payment, the page never heard of it"
    sync_api.expect(page.locator("#log li", has_text="network error")).to_have_count(1)
    assert len(set(_keys(sent))) == 1
    assert CheckoutPayment.objects.count() == 1
    receipt = page.locator("#receipts li")
    sync_api.expect(receipt).to_have_count(1)
    sync_api.expect(receipt.locator(".badge")).to_have_text("replayed")
    assert receipt.get_attribute("data-replayed") == "true"
    sync_api.expect(page.locator("#status")).to_contain_text("the server had already made")


def test_pay_again_after_a_success_replays_the_same_payment(servers: Servers, page: Any) -> None:
    servers.start()
    page.goto(servers.api + "/checkout/")

    page.click("#pay")
    _answers(page, 1)
    page.click("#pay")
    _answers(page, 2)

    assert CheckoutPayment.objects.count() == 1
    sync_api.expect(page.locator("#receipts li")).to_contain_text("2 answers, 1 replayed")


@pytest.mark.parametrize("start_over", ["new payment button", "another amount"])
def test_a_new_payment_after_a_success_gets_a_new_key(
    servers: Servers, page: Any, start_over: str
) -> None:
    servers.start()
    page.goto(servers.api + "/checkout/")
    sent = _record_payment_requests(page)

    page.click("#pay")
    _answers(page, 1)
    if start_over == "new payment button":
        page.click("#new-payment")
    else:
        page.fill("#amount", "20.00")
    page.click("#pay")
    _answers(page, 2)

    assert len(set(_keys(sent))) == 2
    assert CheckoutPayment.objects.count() == 2
    sync_api.expect(page.locator("#receipts li")).to_have_count(2)


def test_a_page_on_another_origin_pays_with_the_cors_recipe(
    servers: Servers, page: Any, settings: Any
) -> None:
    _cors_recipe(settings, servers)
    servers.start()
    page.goto(servers.page_origin + "/")
    sent = _record_payment_requests(page)

    page.dblclick("#pay")
    _answers(page, 2)

    assert len(set(_keys(sent))) == 1
    assert CheckoutPayment.objects.count() == 1
    receipt = page.locator("#receipts li")
    sync_api.expect(receipt).to_have_count(1)
    # Exposed headers: the page read the replay marker of a cross-origin answer.
    sync_api.expect(receipt).to_contain_text("2 answers, 1 replayed")


def _without_cors(settings: Any, servers: Servers) -> None:
    pass


def _key_header_not_allowed(settings: Any, servers: Servers) -> None:
    _cors_recipe(settings, servers)
    settings.CORS_ALLOW_HEADERS = default_headers


def _page_origin_not_trusted_for_csrf(settings: Any, servers: Servers) -> None:
    _cors_recipe(settings, servers)
    settings.CSRF_TRUSTED_ORIGINS = []


@pytest.mark.parametrize(
    ("configure", "shown"),
    [
        (_without_cors, "Could not reach the payment service"),
        (_key_header_not_allowed, "Could not reach the payment service"),
        (_page_origin_not_trusted_for_csrf, "refused: CSRF Failed: Origin checking failed"),
    ],
)
def test_a_page_on_another_origin_is_blocked_without_the_cors_recipe(
    servers: Servers,
    page: Any,
    settings: Any,
    configure: Callable[[Any, Servers], None],
    shown: str,
) -> None:
    configure(settings, servers)
    servers.start()
    page.goto(servers.page_origin + "/")

    page.click("#pay")

    sync_api.expect(page.locator("#status")).to_contain_text(shown)
    assert CheckoutPayment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    sync_api.expect(page.locator("#receipts li")).to_have_count(0)


def test_the_expose_headers_are_what_lets_the_page_see_a_replay(
    servers: Servers, page: Any, settings: Any
) -> None:
    _cors_recipe(settings, servers)
    settings.CORS_EXPOSE_HEADERS = []
    servers.start()
    page.goto(servers.page_origin + "/")
    dropped = _drop_first_answer(page)

    page.click("#pay")
    _answers(page, 1)

    # Still one payment, but the browser hides Idempotent-Replayed from the script.
    assert dropped == [201]
    assert CheckoutPayment.objects.count() == 1
    assert page.locator("#receipts li").get_attribute("data-replayed") == "false"
