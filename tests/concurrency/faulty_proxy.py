"""A TCP proxy in front of a test server that loses responses on purpose.

It forwards each connection to the server and, for the responses that
``drop`` selects, closes the client's socket once the server has answered
instead of relaying the answer: the operation ran, the client never heard. A
response that ``hold`` selects is kept back until the client gives up (its read
timeout), which is the same loss seen as a time-out. The test servers close
every connection after one response (gunicorn's sync workers), so the n-th
connection that gets an answer carries the n-th response.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit


def _never(index: int) -> bool:
    return False


class FaultyProxy:
    def __init__(
        self,
        upstream_url: str,
        drop: Callable[[int], bool] = _never,
        hold: Callable[[int], bool] = _never,
    ) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.drop, self.hold = drop, hold
        self.responses = self.dropped = self.held = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client_gone = threading.Event()
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return

        def forward_request() -> None:
            try:
                while chunk := client.recv(65536):
                    server.sendall(chunk)
            except OSError:
                pass
            client_gone.set()

        threading.Thread(target=forward_request, daemon=True).start()
        try:
            first = server.recv(65536)  # returns once the server has done the work
            if not first:
                return
            with self._lock:
                index = self.responses
                self.responses += 1
                drop, hold = self.drop(index), self.hold(index)
                self.dropped += drop
                self.held += hold and not drop
            if drop:
                return
            if hold:
                client_gone.wait(60)
                return
            client.sendall(first)
            while chunk := server.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
