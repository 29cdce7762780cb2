"""STOW-RS (DICOMweb, PS3.18 10.5): ``POST /studies`` with ``multipart/related; type="application/dicom"``
into landing, on the same guarantees as the C-STORE receiver.

Each part (a DICOM Part 10 instance) is landed by `streaming.ingest.dicomland.store_instance` (atomic,
fsynced, exactly once) before the answer is sent; the answer is the standard's: 200 when every instance was
stored, 202 when some failed, 409 when none was, with a DICOM JSON body listing the stored instances
(ReferencedSOPSequence) and the failed ones with their reason (FailedSOPSequence, FailureReason ``A700``
for a full disk, ``C000`` for what cannot be read, ``0122`` for a SOP class that is no radiograph). Every
request needs ``Authorization: Bearer <stow_token>``; the server listens on loopback unless ``--allow-remote``.
Served by the stdlib's HTTP server in `xray receive`'s process (``stow_port``).
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import io
import json
import logging
import threading
import uuid
from collections import Counter
from email.errors import CloseBoundaryNotFoundDefect
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streaming.core.addresses import is_loopback
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.ingest.dicomland import CANNOT_UNDERSTAND, SUCCESS, LabelRules, store_instance
from streaming.ingest.receipts import ReceiptLog

log = logging.getLogger(__name__)

__all__ = ["MAX_REQUEST_BYTES", "StowServer", "check_stow", "start_stow"]

MAX_REQUEST_BYTES = 1024 * 1024 * 1024  # one request; a study of radiographs is far smaller
SOP_CLASS_NOT_SUPPORTED = 0x0122
_SOP_CLASS, _SOP_INSTANCE, _FAILURE_REASON = "00081150", "00081155", "00081197"


def check_stow(config: XrayConfig, allow_remote: bool) -> None:
    """`ConfigError` for STOW-RS settings that cannot be served: no token, or a reachable host not allowed."""
    if not config.stow_port:
        return
    if not config.stow_token:
        raise ConfigError("stow_port is set but stow_token is empty: set a long random stow_token (senders pass "
                          "it as 'Authorization: Bearer <token>')")
    if not is_loopback(config.stow_host) and not allow_remote:
        raise ConfigError(f"stow_host {config.stow_host} is reachable from other machines; add --allow-remote if "
                          "that is meant (better: keep 127.0.0.1 behind a TLS reverse proxy)")


def _instance_json(sop_class: str | None, sop_instance: str | None, reason: int | None = None) -> dict:
    item = {}
    if sop_class:
        item[_SOP_CLASS] = {"vr": "UI", "Value": [sop_class]}
    if sop_instance:
        item[_SOP_INSTANCE] = {"vr": "UI", "Value": [sop_instance]}
    if reason is not None:
        item[_FAILURE_REASON] = {"vr": "US", "Value": [reason]}
    return item


class StowServer(ThreadingHTTPServer):
    """The STOW-RS endpoint of one lakehouse; ``counts`` as the C-STORE receiver's."""

    daemon_threads = True

    def __init__(self, config: XrayConfig, rules: LabelRules, storage_classes: set[str],
                 receipts: ReceiptLog | None = None):
        self.config, self.rules, self.storage_classes = config, rules, storage_classes
        self.receipts = receipts
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__((config.stow_host, config.stow_port), _Handler)

    def store_part(self, data: bytes, request: str) -> tuple[dict, bool]:
        """One part of request ``request``: (its DICOM JSON item, whether it was stored)."""
        item, status, outcome = self._store(data)
        if self.receipts is not None:
            self.receipts.instance("stow-rs", request, None, data, outcome, status)
        return item, status == SUCCESS

    def _store(self, data: bytes) -> tuple[dict, int, str]:
        import pydicom

        try:
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop_class, uid = str(header.SOPClassUID), str(header.SOPInstanceUID)
        except Exception:  # not a DICOM Part 10 instance: the part fails, the request goes on
            self._count("failed")
            return _instance_json(None, None, CANNOT_UNDERSTAND), CANNOT_UNDERSTAND, "failed"
        if sop_class not in self.storage_classes:
            self._count("failed")
            return _instance_json(sop_class, uid, SOP_CLASS_NOT_SUPPORTED), SOP_CLASS_NOT_SUPPORTED, "failed"
        status, outcome = store_instance(self.config.landing_dir, self.rules.group("", uid), uid, data, "STOW-RS")
        self._count(outcome)
        return _instance_json(sop_class, uid, None if status == SUCCESS else status), status, outcome

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


class _Handler(BaseHTTPRequestHandler):
    server: StowServer
    server_version = "xray-stow"
    sys_version = ""

    def do_POST(self) -> None:  # the name http.server dispatches to
        token = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.config.stow_token}"
        if not hmac.compare_digest(token.encode(), expected.encode()):
            self._answer(HTTPStatus.UNAUTHORIZED, {}, extra={"WWW-Authenticate": 'Bearer realm="xray"'})
            return
        if self.path.rstrip("/") != "/studies":
            self._answer(HTTPStatus.NOT_FOUND, {})
            return
        kind = self.headers.get("Content-Type", "")
        if not kind.lower().startswith("multipart/related") or "application/dicom" not in kind.lower():
            self._answer(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {})
            return
        body = self._body()
        if body is None:
            return
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + body)
        # A body without its closing boundary may end inside an instance (DICOM has no end marker): refused.
        if not message.is_multipart() or any(isinstance(d, CloseBoundaryNotFoundDefect) for d in message.defects):
            self._answer(HTTPStatus.BAD_REQUEST, {})
            return
        stored, failed, request = [], [], uuid.uuid4().hex[:16]
        for part in message.iter_parts():
            item, ok = self.server.store_part(part.get_payload(decode=True) or b"", request)
            (stored if ok else failed).append(item)
        response = {}
        if stored:
            response["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            response["00081198"] = {"vr": "SQ", "Value": failed}
        status = HTTPStatus.OK if not failed else HTTPStatus.ACCEPTED if stored else HTTPStatus.CONFLICT
        self._answer(status, response)

    def _body(self) -> bytes | None:
        """The request's body, sized (Content-Length) or chunked (what dicomweb-client sends above 1 MB);
        None once an error was answered."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(100).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    self._answer(HTTPStatus.BAD_REQUEST, {})
                    return None
                if size == 0:
                    while self.rfile.readline(1000).strip():  # trailers, then the closing blank line
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {})
                    return None
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    return None  # the sender went away mid-body: nothing of it is stored
                chunks.append(chunk)
                self.rfile.readline(10)  # the CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, {})
            return None
        if int(length) > MAX_REQUEST_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {})
            return None
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else None  # cut short: the sender went away, nothing stored

    def _answer(self, status: HTTPStatus, body: dict, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
        log.debug("STOW-RS %s", format % args)


def start_stow(config: XrayConfig, rules: LabelRules, storage_classes: set[str],
               receipts: ReceiptLog | None = None) -> StowServer:
    """Listen and serve in a daemon thread; `ConfigError` when the port cannot be bound."""
    try:
        server = StowServer(config, rules, storage_classes, receipts)
    except OSError as error:
        raise ConfigError(f"cannot listen on {config.stow_host}:{config.stow_port} ({error.strerror or error}) "
                          "for STOW-RS: choose another stow_port") from None
    threading.Thread(target=server.serve_forever, name="xray-stow", daemon=True).start()
    return server
