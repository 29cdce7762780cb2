"""``xray serve``: a read-only status page that refreshes itself, on loopback by default.

Stdlib only (``http.server``): one page and its script and style (package data under ``static/``, nothing
from a CDN: hospitals are often air-gapped), ``/status.json`` (`streaming.ops.livestatus.page_status`, kept
2 s), and the evaluation report's charts by their fixed names. Anything else is 404, a method other than
GET or HEAD is 405; no request changes anything. Every response forbids framing, sniffing and loading
from elsewhere (Content-Security-Policy ``default-src 'self'``); the status is never cached by a browser.

A page bound to loopback also refuses a request whose ``Host`` is not a loopback name: another site's
page, reaching 127.0.0.1 through a DNS name it controls (DNS rebinding), cannot read the status.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from streaming.core.addresses import is_loopback
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.core.signals import StopEvent, stop_on_signals
from streaming.lakehouse.engine import Lakehouse
from streaming.ops.livestatus import CHARTS, StatusCache, page_status

__all__ = ["LOOPBACK_NAMES", "Address", "StatusServer", "check_address", "is_loopback", "listen_address", "make_server",
           "serve"]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/status.js": ("status.js", "text/javascript; charset=utf-8"),
          "/status.css": ("status.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Address:
    """Where the page listens, and where each value came from (an option, or a setting of the config file
    or environment): a message about the port names what the user has to change."""

    host: str
    port: int
    host_from: str = "--host"
    port_from: str = "--port"


def listen_address(config: XrayConfig, host: str | None, port: int | None) -> Address:
    """``--host``/``--port`` when given, else the settings ``serve_host``/``serve_port``."""
    return Address(host or config.serve_host, config.serve_port if port is None else port,
                   "--host" if host else "the setting serve_host", "--port" if port is not None
                   else "the setting serve_port")


def check_address(host: str, port: int, allow_remote: bool, address: Address | None = None) -> None:
    """Refuse a port out of range, and a non-loopback host unless ``allow_remote`` says it is meant."""
    address = address or Address(host, port)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{address.port_from} must be from 0 to 65535 (0: any free port), got {port}")
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(f"{address.host_from} {host} is not a loopback address: the page would be reachable from other "
                          "machines; add --allow-remote if that is meant (better: keep 127.0.0.1 and reach it "
                          "through an SSH tunnel or an authenticating proxy)")


class StatusServer(ThreadingHTTPServer):
    """The HTTP server: the cache, the report folder and the Host names it answers to."""

    daemon_threads = True  # a slow client never holds the stop

    def __init__(self, address: tuple[str, int], cache: StatusCache, reports_dir: Path,
                 allowed_hosts: frozenset[str] | None):
        self.cache, self.reports_dir, self.allowed_hosts = cache, Path(reports_dir), allowed_hosts
        self.assets = {path: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
                       for path, (name, kind) in STATIC.items()}
        super().__init__(address, StatusHandler)

    def handle_error(self, request: object, client_address: tuple) -> None:
        """A client that went away mid-answer (a closed tab, a refresh, a probe) is routine: one DEBUG line,
        not the stdlib's traceback on stderr; anything else is still reported in full."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # BrokenPipe, ConnectionReset/Aborted
            log.debug("client %s went away: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class StatusHandler(BaseHTTPRequestHandler):
    """GET and HEAD of the page, its assets, ``/status.json`` and the charts; nothing else."""

    server: StatusServer
    def version_string(self) -> str:
        return "xray-serve"  # no Python version for a scanner to look up

    def do_GET(self) -> None:  # the name http.server dispatches to
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: only GET and HEAD\n", "text/plain; charset=utf-8",
                   send_body=True, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _answer(self, send_body: bool) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, b"unexpected Host header: open the page by 127.0.0.1 or localhost\n",
                       "text/plain; charset=utf-8", send_body)
            return
        path = urllib.parse.urlsplit(self.path).path
        if path in self.server.assets:
            body, kind = self.server.assets[path]
            self._send(HTTPStatus.OK, body, kind, send_body)
        elif path == "/status.json":
            code, body = self.server.cache.get()
            self._send(HTTPStatus(code), body, "application/json", send_body, extra={"Cache-Control": "no-store"})
        elif path.startswith("/charts/") and path[len("/charts/"):] in CHARTS:
            self._chart(path[len("/charts/"):], send_body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", send_body)

    def _chart(self, name: str, send_body: bool) -> None:
        # `name` is one of the fixed chart names: no part of the request becomes a path.
        try:
            body = (self.server.reports_dir / name).read_bytes()
        except OSError:
            self._send(HTTPStatus.NOT_FOUND, b"no such chart yet: run xray metrics\n", "text/plain; charset=utf-8",
                       send_body)
            return
        self._send(HTTPStatus.OK, body, "image/png", send_body)

    def _host_allowed(self) -> bool:
        if self.server.allowed_hosts is None:
            return True
        host = self.headers.get("Host")
        if host is None:
            return True  # HTTP/1.0 without Host: not a browser
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]").lower() in self.server.allowed_hosts

    def _send(self, code: HTTPStatus, body: bytes, kind: str, send_body: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        headers = {"Content-Type": kind, "Content-Length": str(len(body)), "Cache-Control": "no-cache",
                   **SECURITY_HEADERS, **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)


def make_server(lakehouse: Lakehouse, host: str, port: int, port_from: str = "--port") -> StatusServer:
    """A server bound to ``host:port`` (port 0: any free port) over the lakehouse, not started yet."""
    config = lakehouse.config
    cache = StatusCache(lambda: page_status(lakehouse), root=str(config.root), seconds=CACHE_SECONDS)
    allowed = LOOPBACK_NAMES | {host.lower()} if is_loopback(host) else None
    server_class = StatusServer
    if ":" in host:  # an IPv6 address
        server_class = type("StatusServer6", (StatusServer,), {"address_family": socket.AF_INET6})
    try:
        return server_class((host, port), cache, config.reports_dir, allowed)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}): choose another port "
                          f"(it came from {port_from}), or stop what listens there") from None


def _announce(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe: a supervisor or a test waits for the address


def serve(config: XrayConfig, host: str, port: int, allow_remote: bool = False,
          announce: Callable[[str], None] = _announce, address: Address | None = None) -> int:
    """Serve the page until SIGINT or SIGTERM; returns the signal number that stopped it.

    The status is read with delta-rs whatever ``delta_engine`` says, so no Spark session is ever started.
    ``address`` says where host and port came from (`listen_address`), for messages.
    """
    address = address or Address(host, port)
    check_address(host, port, allow_remote, address)
    server = make_server(Lakehouse(None, config.with_overrides(delta_engine="delta-rs")), host, port,
                         address.port_from)
    done = StopEvent()
    restore = stop_on_signals(done)
    worker = threading.Thread(target=server.serve_forever, name="xray-serve", daemon=True)
    worker.start()
    try:
        if not is_loopback(host):
            print(f"xray serve: WARNING: listening on {host}, reachable from other machines: the page holds "
                  "counts and hashes only, but anyone who reaches it reads them", file=sys.stderr)
        announce(f"xray serve: {server.url} (read-only status page of {config.root}; Ctrl-C or SIGTERM stops it)")
        while not done.wait(1.0):
            pass
    finally:
        restore()
        server.shutdown()
        server.server_close()
        worker.join()
    return done.signum
