"""`xray receive`: a DICOM Storage SCP, so modalities and the PACS push radiographs straight into landing.

pynetdicom does the DICOM network protocol; this module decides who may associate and what a C-STORE
answers. It accepts C-ECHO and the radiography storage SOP classes (CR, DX for presentation and for
processing, Secondary Capture) in every transfer syntax pynetdicom knows, compressed ones included (silver
decodes them, or quarantines what it cannot, with the reason). Each instance is in landing, atomically and
fsynced (`streaming.ingest.dicomland`), before the success status goes back; a full disk answers
``A700`` (refused: out of resources) and a malformed instance ``C000`` (cannot understand), never success,
so the sender keeps it and sends it again.

Who may associate: ``receive_calling_aes`` (empty: any calling AE, then on loopback only unless
``--allow-remote``) and ``receive_peer_addresses``; anyone else gets an A-ASSOCIATE-RJ (calling AE not
recognised, or no reason given for an address). TLS with ``receive_tls_cert``/``_key`` (and ``_ca``: peers
must present a certificate it signed). Calling AE titles are logged as keyed hashes, UIDs only at DEBUG.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import ssl
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streaming.core.addresses import is_loopback
from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.core.pseudonym import keyed_hash, short_ref
from streaming.ingest.dicomland import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    LabelRules,
    remove_stale_temporaries,
    store_instance,
)
from streaming.ingest.receipts import ReceiptLog

log = logging.getLogger(__name__)

__all__ = [
    "CANNOT_UNDERSTAND", "OUT_OF_RESOURCES", "STORAGE_SOP_CLASSES", "SUCCESS", "DicomReceiver", "ReceiveAddress",
    "receive", "receive_address",
]

STORAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
# A-ASSOCIATE-RJ (result, source, diagnostic): rejected permanently by the service user.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # calling AE title not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # no reason given (an address not let in)


@dataclass(frozen=True)
class ReceiveAddress:
    """Where the receiver listens and who it lets in."""

    host: str
    port: int
    ae_title: str


def receive_address(config: XrayConfig, port: int | None = None, ae_title: str | None = None,
                    allow_remote: bool = False) -> ReceiveAddress:
    """The listening address after the rules: any calling AE is let in only on loopback, unless
    ``allow_remote`` (or a list of calling AE titles) says other machines are meant. `ConfigError` else."""
    port = config.receive_port if port is None else port
    title = (config.receive_ae_title if ae_title is None else ae_title).strip()
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535 (0: any free port), got {port}")
    if not title or len(title) > 16 or not title.isascii() or "\\" in title:
        raise ConfigError(f"AE title {title!r} must be 1 to 16 ASCII characters without a backslash")
    restricted = bool(config.receive_calling_aes)
    host = config.receive_host or ("0.0.0.0" if restricted or allow_remote else "127.0.0.1")
    if not is_loopback(host) and not (restricted or allow_remote):
        raise ConfigError(f"receive_host {host} is reachable from other machines and receive_calling_aes is empty "
                          "(any calling AE would be let in): list the PACS's and modalities' AE titles in "
                          "receive_calling_aes, or add --allow-remote if that is meant")
    for peer in config.receive_peer_addresses:
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(f"receive_peer_addresses: {peer!r} is not an address or network "
                              "(10.1.2.3, 10.1.0.0/16)") from None
    return ReceiveAddress(host, port, title)


def _tls_context(config: XrayConfig) -> ssl.SSLContext | None:
    if not (config.receive_tls_cert or config.receive_tls_key):
        return None
    if not (config.receive_tls_cert and config.receive_tls_key):
        raise ConfigError("receive_tls_cert and receive_tls_key go together: set both (PEM files) or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.receive_tls_cert, config.receive_tls_key)
        if config.receive_tls_ca:
            context.load_verify_locations(config.receive_tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot load the receiver's TLS files ({error}); check receive_tls_cert, "
                          "receive_tls_key and receive_tls_ca (PEM)") from None
    return context


class DicomReceiver:
    """The Storage SCP of one lakehouse: `start` listens (threads of its own), `stop` ends it.

    ``counts``: associations accepted and refused, instances stored, duplicates, versions and failures.
    """

    def __init__(self, config: XrayConfig, address: ReceiveAddress):
        self.config = config
        self.address = address
        self.landing = config.landing_dir
        self.rules = LabelRules(config)
        self.allowed_aes = {ae.strip() for ae in config.receive_calling_aes}
        self.allowed_peers = [ipaddress.ip_network(p, strict=False) for p in config.receive_peer_addresses]
        self.tls = _tls_context(config)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._associations: dict[int, str] = {}
        self.receipts = ReceiptLog(config)
        self._server = None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when ``address.port`` was 0)."""
        return self._server.server_address[1] if self._server is not None else self.address.port

    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import Verification

        if self.config.log_level.upper() != "DEBUG" and not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines name AE titles and UIDs
        stale = remove_stale_temporaries(self.landing)
        if stale:
            log.info("removed %d temporary file(s) a stopped receiver left in landing", stale)
        ae = AE(ae_title=self.address.ae_title)
        ae.maximum_associations = 32
        ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_ended),
                    (evt.EVT_ABORTED, self._on_ended)]
        try:
            self._server = ae.start_server((self.address.host, self.address.port), block=False,
                                           evt_handlers=handlers, ssl_context=self.tls)
        except OSError as error:
            raise ConfigError(f"cannot listen on {self.address.host}:{self.address.port} "
                              f"({error.strerror or error}): choose another --port (or stop what listens there)"
                              ) from None
        self.receipts.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.receipts.stop()

    # -- handlers (pynetdicom's threads) ---------------------------------------------------------------
    def _ae_ref(self, title: str) -> str:
        return short_ref(keyed_hash(self.config.patient_salt(), "calling_ae", title.strip()))

    def _on_requested(self, event) -> None:  # pynetdicom's Event
        # The request itself: pynetdicom fills `requestor.ae_title` only after this event.
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        peer = event.assoc.requestor.address
        reason = None
        if self.allowed_aes and calling not in self.allowed_aes:
            reason, rejection = "calling AE title not in receive_calling_aes", REJECT_CALLING_AE
        elif self.allowed_peers and not self._peer_allowed(peer):
            reason, rejection = "address not in receive_peer_addresses", REJECT_NO_REASON
        if reason is not None:
            with self._lock:
                self.counts["refused"] += 1
            self.receipts.refused(uuid.uuid4().hex[:16], calling)
            log.warning("refused an association from calling AE %s: %s", self._ae_ref(calling), reason)
            event.assoc.acse.send_reject(*rejection)
            # As pynetdicom's own rejection does: wait for the reject PDU to leave before the socket closes
            # (else the peer sees an abort, not the reason).
            event.assoc.kill()
            return
        with self._lock:
            self.counts["associations"] += 1
            self._associations[id(event.assoc)] = uuid.uuid4().hex[:16]

    def _peer_allowed(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.allowed_peers)

    def _on_store(self, event) -> int:  # pynetdicom's Event
        uid = str(event.request.AffectedSOPInstanceUID or "")
        calling = event.assoc.requestor.ae_title
        data = event.encoded_dataset()
        status, outcome = store_instance(self.landing, self.rules.group(calling, uid), uid, data,
                                         f"calling AE {self._ae_ref(calling)}")
        self._count(outcome)
        with self._lock:
            association = self._associations.get(id(event.assoc), "")
        self.receipts.instance("c-store", association, calling, data, outcome, status)
        return status

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _on_ended(self, event) -> None:  # pynetdicom's Event
        with self._lock:
            number = self._associations.pop(id(event.assoc), None)
        if number is not None:
            log.info("association %s from calling AE %s ended (%s)", number,
                     self._ae_ref(event.assoc.requestor.ae_title), event.event.name.removeprefix("EVT_").lower())


def _announce(line: str) -> None:
    print(line, flush=True)  # at once, also into a pipe: a supervisor or a test waits for the address


def receive(config: XrayConfig, port: int | None = None, ae_title: str | None = None, allow_remote: bool = False,
            announce: Callable[[str], None] = _announce, stop_event: threading.Event | None = None) -> int:
    """Receive until SIGINT or SIGTERM (or ``stop_event``); returns the signal number that stopped it (0)."""
    from streaming.ingest.stow import check_stow, start_stow

    address = receive_address(config, port, ae_title, allow_remote)
    check_stow(config, allow_remote)
    receiver = DicomReceiver(config, address)
    stopped: list[int] = []
    done = stop_event or threading.Event()

    def stop(signum, frame) -> None:
        stopped.append(signum)
        done.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    receiver.start()
    stow = start_stow(config, receiver.rules, set(STORAGE_SOP_CLASSES), receiver.receipts) \
        if config.stow_port else None
    try:
        if stow is not None:
            announce(f"xray receive: STOW-RS on http://{config.stow_host}:{stow.server_address[1]}/studies "
                     "(bearer token: stow_token)")
        if not is_loopback(address.host):
            print(f"xray receive: listening on {address.host}: other machines reach it (calling AE titles let in: "
                  f"{', '.join(sorted(receiver.allowed_aes)) or 'any'})", file=sys.stderr)
        announce(f"xray receive: AE title {address.ae_title} on {address.host}:{receiver.port}"
                 f"{' (TLS)' if receiver.tls else ''}, into {Path(config.landing_dir)} (Ctrl-C or SIGTERM stops it)")
        while not done.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        counts = receiver.counts
        if stow is not None:
            stow.shutdown()
            stow.server_close()
            counts = counts + stow.counts
        receiver.stop()  # last: it writes the receipts of both
        log.info("stopped receiving: %d association(s), %d refused; %d instance(s) stored, %d already held, "
                 "%d new version(s), %d failed", counts["associations"], counts["refused"], counts["stored"],
                 counts["duplicates"], counts["versions"], counts["failed"])
    return stopped[0] if stopped else 0
