"""A scripted HTTP server for the client tests: it answers each request with
the next response of its script and records what it received."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    url: str
    script: list[tuple[int, dict[str, str], bytes]]
    received: list[Received] = field(default_factory=list)

    def keys(self, header: str = "Idempotency-Key") -> list[str | None]:
        return [r.headers.get(header) for r in self.received]


@contextmanager
def stub_server(*script: tuple[int, dict[str, str], bytes]) -> Iterator[Stub]:
    """Answers with ``script`` in order, then repeats its last response."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if not size:
                        break
                    body += chunk
            else:
                body = self.rfile.read(length)
            with lock:
                stub.received.append(Received(self.command, dict(self.headers.items()), body))
                index = min(len(stub.received), len(stub.script)) - 1
            status, headers, content = stub.script[index]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub = Stub(f"http://127.0.0.1:{server.server_address[1]}/", list(script))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
