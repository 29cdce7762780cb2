"""A real HTTP server on 127.0.0.1 (ephemeral port) that records the JSON POSTed to it: the webhook the
alert tests deliver to. Its answers are scripted: a status per request (the last one repeats), or a hold
that keeps a request waiting until the test releases it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """``with Webhook(statuses=[500, 200]) as hook: ... hook.url ... hook.bodies``."""

    def __init__(self, statuses: list[int] | None = None, hold: bool = False):
        self.statuses = list(statuses or [200])
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.requests = 0
        self.release = threading.Event()  # a held request answers once this is set
        self.hold = hold
        self.received = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.received:
                    status = hook.statuses[min(hook.requests, len(hook.statuses) - 1)]
                    hook.requests += 1
                    hook.bodies.append(json.loads(body))
                    hook.headers.append(dict(self.headers))
                    hook.received.notify_all()
                if hook.hold:
                    hook.release.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token-123"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, requests: int, timeout: float = 30.0) -> bool:
        """Wait until this many requests arrived (False if they did not within ``timeout``)."""
        with self.received:
            return self.received.wait_for(lambda: self.requests >= requests, timeout)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
