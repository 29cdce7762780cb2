"""The Kaggle source: credentials found the way the kaggle client finds them, the dataset downloaded with
the client (an unchanged archive is not downloaded again), every failure turned into one line that never
echoes a credential, and the archive staged like any other (`streaming.ingest.stage.stage_archive`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import IngestError, first_line
from streaming.core.progress import attached_to_terminal, progress
from streaming.ingest.options import StagingOptions
from streaming.ingest.record import record_run
from streaming.ingest.stage import StagingReport, stage_archive

log = logging.getLogger(__name__)

KAGGLE_TOKEN_URL = "https://www.kaggle.com/settings/api"

__all__ = ["KAGGLE_TOKEN_URL", "ingest_kaggle", "kaggle_config_file"]


@dataclass(frozen=True)
class _Credentials:
    source: str  # where they came from, for messages (never the values)
    secrets: tuple[str, ...]  # values to scrub from anything we print or raise


def kaggle_config_file() -> Path:
    """The ``kaggle.json`` the kaggle client reads: ``$KAGGLE_CONFIG_DIR``, else ``~/.kaggle``, else (Linux,
    when ``~/.kaggle`` does not exist) ``$XDG_CONFIG_HOME/kaggle``."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser() / "kaggle.json"
    home = Path("~/.kaggle").expanduser()
    if sys.platform.startswith("linux") and not home.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
        return Path(xdg) / "kaggle" / "kaggle.json"
    return home / "kaggle.json"


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _find_credentials() -> _Credentials:
    """Which Kaggle credentials exist, in the client's order; `IngestError` naming the options when none."""
    config_file = kaggle_config_file()
    file_data: dict[str, Any] = {}
    if config_file.is_file():
        if os.name != "nt" and config_file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("Kaggle credentials file %s is readable by other users; run 'chmod 600 %s'",
                        config_file, config_file)
        try:
            loaded = json.loads(config_file.read_text() or "{}")
            file_data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            log.warning("cannot parse %s as JSON; ignoring it", config_file)

    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        value = _read_token_file(Path(token)) if Path(token).is_file() else token
        return _Credentials("KAGGLE_API_TOKEN", tuple(s for s in (token, value) if s))
    for name in ("access_token", "access_token.txt"):
        value = _read_token_file(Path("~/.kaggle").expanduser() / name)
        if value:
            return _Credentials(f"~/.kaggle/{name}", (value,))

    username = os.environ.get("KAGGLE_USERNAME") or file_data.get("username")
    key = os.environ.get("KAGGLE_KEY") or file_data.get("key")
    if username and key:
        source = "KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(config_file)
        basic = base64.b64encode(f"{username}:{key}".encode()).decode()
        return _Credentials(source, (str(key), basic))

    oauth_file = Path("~/.kaggle/credentials.json").expanduser()
    if oauth_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(oauth_file.read_text())
            if isinstance(data, dict) and data.get("refresh_token"):
                secrets = tuple(str(data[k]) for k in ("refresh_token", "access_token") if data.get(k))
                return _Credentials(str(oauth_file), secrets)

    half = " (KAGGLE_USERNAME is set but KAGGLE_KEY is not)" if username and not key else ""
    where = config_file if os.environ.get("KAGGLE_CONFIG_DIR") else "~/.kaggle/kaggle.json"
    raise IngestError(
        f"no Kaggle credentials found{half}: set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN, "
        f"or save kaggle.json as {where} (or in $KAGGLE_CONFIG_DIR) with chmod 600 - create a token at "
        f"{KAGGLE_TOKEN_URL}"
    )


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def _quiet_stdout(secrets: Iterable[str]) -> Iterator[None]:
    """Keep the kaggle client's prints (auth help, URLs, version nags) off stdout; log them at DEBUG."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("kaggle: %s", _redact(line, secrets))


@contextlib.contextmanager
def _logged_growth(path: Path, enabled: bool, poll_seconds: float = 1.0) -> Iterator[None]:
    """While the body runs, report the bytes ``path`` gains (a download without a terminal)."""
    if not enabled:
        yield
        return
    done = threading.Event()

    def size() -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    def watch() -> None:
        last = size()
        with progress(None, f"download {path.name}", unit="B", terminal=False) as bar:
            while not done.wait(poll_seconds):
                now = size()
                if now > last:
                    bar.update(now - last)
                last = now

    watcher = threading.Thread(target=watch, name="download-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=poll_seconds + 1)


def _kaggle_endpoint() -> str:
    from kagglesdk.kaggle_env import get_endpoint, get_env

    try:
        return get_endpoint(get_env())
    except Exception:  # kagglesdk raises a bare Exception for an unknown environment
        raise IngestError(
            f"KAGGLE_API_ENVIRONMENT={os.environ.get('KAGGLE_API_ENVIRONMENT')!r} is not a Kaggle "
            "environment; unset it (or use PROD)"
        ) from None


def _kaggle_api(secrets: tuple[str, ...]) -> Any:
    """A `KaggleApi` that reads the current environment each time it connects."""
    with _quiet_stdout(secrets):
        # Importing `kaggle` authenticates once as a side effect, printing help when it finds nothing.
        from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import KaggleClient
    from kagglesdk.kaggle_env import get_env

    class _Api(KaggleApi):
        def build_kaggle_client(self) -> Any:
            # KaggleApi fixes its endpoint when `kaggle` is first imported and knows only PROD and
            # LOCALHOST; kagglesdk reads KAGGLE_API_ENVIRONMENT itself (PROD, QA, TEST=localhost:7777, ...).
            # verbose stays off: the client's verbose mode prints request headers, credentials included.
            return KaggleClient(
                env=get_env(),
                verbose=False,
                username=self.config_values.get(self.CONFIG_NAME_USER),
                password=self.config_values.get(self.CONFIG_NAME_KEY),
                api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                response_processor=self.get_response_processor(),
            )

    api = _Api()
    # The class read KAGGLE_CONFIG_DIR at import time; follow the current environment instead.
    config_file = kaggle_config_file()
    api.config_dir = str(config_file.parent)
    api.config = str(config_file)
    return api


def _network_reason(error: BaseException) -> str:
    text = str(error)
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "Temporary failure in name resolution" in text:
        return "DNS lookup failed"
    if "refused" in text.lower():
        return "connection refused"
    if "timed out" in text.lower() or "Timeout" in type(error).__name__:
        return "timed out"
    return "connection failed"


def _kaggle_failure(
    error: BaseException, dataset: str, credentials: _Credentials, endpoint: str
) -> IngestError:
    """One clear line for a failed Kaggle call; never echoes a credential."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code == 401:
            return IngestError(
                f"Kaggle rejected the credentials from {credentials.source} (HTTP 401); check the username "
                f"and key or create a new API token at {KAGGLE_TOKEN_URL}"
            )
        if code == 403:
            return IngestError(
                f"Kaggle refused access to {dataset} with the credentials from {credentials.source} "
                f"(HTTP 403); check them, and accept the dataset's terms on "
                f"https://www.kaggle.com/datasets/{dataset}"
            )
        if code == 404:
            return IngestError(
                f"Kaggle dataset {dataset} not found (HTTP 404); check the owner/slug given by --dataset or "
                "kaggle_dataset"
            )
        if code == 429:
            return IngestError("Kaggle is rate-limiting requests (HTTP 429); wait a few minutes, run again")
        detail = first_line(_redact(str(error), credentials.secrets))
        return IngestError(f"Kaggle API error for {dataset} (HTTP {code}: {detail}); try again later")
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return IngestError(
            f"cannot reach the Kaggle API at {endpoint} ({_network_reason(error)}); check the network and "
            "proxy settings, or stage a local copy with 'xray ingest-folder'"
        )
    detail = first_line(_redact(f"{type(error).__name__}: {error}", credentials.secrets))
    return IngestError(f"Kaggle download of {dataset} failed ({detail}); run again to resume")


def _dataset_metadata(api: Any, owner: str, slug: str) -> dict[str, Any]:
    """Title, version and license from the API (GetDataset); empty where the client does not offer it."""
    try:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest
    except ImportError:  # an older client without the call
        return {}
    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    with api.build_kaggle_client() as client:
        dataset = client.datasets.dataset_api_client.get_dataset(request)
    return {
        "title": getattr(dataset, "title", None) or None,
        "version": getattr(dataset, "current_version_number", None),
        "license": getattr(dataset, "license_name", None) or None,
    }


def _parse_dataset(ref: str) -> tuple[str, str, int | None]:
    parts = ref.strip().strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts) or (len(parts) == 3 and not parts[2].isdigit()):
        raise IngestError(f"invalid Kaggle dataset {ref!r}; expected owner/slug such as "
                          "paultimothymooney/chest-xray-pneumonia")
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 else None


def ingest_kaggle(
    spark: Any,
    config: XrayConfig,
    download_dir: str | Path | None = None,
    **staging: Any,
) -> StagingReport:
    """Download ``config.kaggle_dataset`` with the kaggle client and stage its X-rays into landing.

    Credentials: ``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``, or ``kaggle.json`` in
    ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle`` (a warning is logged when that file is readable by others).
    The archive is kept in ``download_dir`` (default ``<lakehouse>/downloads``; an unchanged archive is
    not downloaded again), checked for unsafe members, and only the planned images are extracted, into a
    temporary folder under the lakehouse, before any file is placed in landing. ``staging``: the fields
    of `StagingOptions` as keywords: ``sample_per_class`` limits each split/LABEL to N random images
    (``seed``); ``splits`` picks splits; ``batch_files`` and ``interval_seconds`` drop files K at a time
    to simulate arrivals; checked before any download. Every failure
    (missing or rejected credentials, no network, unknown dataset, unsafe archive) raises a one-line
    `IngestError`. ``spark`` may be None: a session is then obtained only to record the run, after the
    download succeeded.
    """
    options = StagingOptions(**staging)
    dataset = config.kaggle_dataset
    owner, slug, version = _parse_dataset(dataset)
    downloads = Path(download_dir).expanduser() if download_dir else config.root / "downloads"
    metadata = _download(dataset, owner, slug, downloads)
    archive = downloads / f"{slug}.zip"
    if not archive.is_file():
        raise IngestError(f"Kaggle reported a download of {dataset} but {archive} is missing; run again")
    report = StagingReport(f"{owner}/{slug}", "kaggle", config.landing_dir, title=metadata.get("title"),
                           version=version or metadata.get("version"), license=metadata.get("license"))
    stage_archive(config, archive, report, options)
    record_run(spark, config, report, options)
    log.info("%s", report.summary())
    return report


def _download(dataset: str, owner: str, slug: str, downloads: Path) -> dict[str, Any]:
    """Authenticate, read the dataset's metadata and download its archive into ``downloads``; returns
    the metadata (title, version, license; empty when unavailable)."""
    credentials = _find_credentials()
    endpoint = _kaggle_endpoint()
    import requests

    api = _kaggle_api(credentials.secrets)
    try:
        with _quiet_stdout(credentials.secrets):
            try:
                api.authenticate()
            except SystemExit:
                # The client found credentials but they did not authenticate (e.g. an expired token).
                raise IngestError(
                    f"Kaggle did not accept the credentials from {credentials.source}; create a new API "
                    f"token at {KAGGLE_TOKEN_URL}"
                ) from None
            try:
                metadata = _dataset_metadata(api, owner, slug)
            except requests.HTTPError as error:
                if error.response is None or error.response.status_code in (401, 403, 404, 429):
                    raise
                log.warning("Kaggle metadata of %s unavailable (HTTP %s); recording the download without it",
                            dataset, error.response.status_code)
                metadata = {}
            downloads.mkdir(parents=True, exist_ok=True)
            log.info("downloading Kaggle dataset %s to %s", dataset, downloads)
            # On a terminal the client draws its own tqdm bar; elsewhere the archive's growth is logged.
            terminal = attached_to_terminal()
            with _logged_growth(downloads / f"{slug}.zip", enabled=not terminal):
                api.dataset_download_files(dataset, path=str(downloads), unzip=False, quiet=not terminal)
    except IngestError:
        raise
    except Exception as error:  # every client failure becomes one line without secrets
        raise _kaggle_failure(error, dataset, credentials, endpoint) from None
    return metadata
