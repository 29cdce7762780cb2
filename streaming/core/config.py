"""One typed configuration object for every command.

Precedence, lowest to highest: defaults, a config file (``xray.toml`` in the working directory, or the file
named by ``--config`` / ``XRAY_CONFIG``; TOML or YAML), ``XRAY_<KEY>`` environment variables, command-line
options. Everything the service writes lives under one lakehouse root.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import tomllib

from streaming.core.errors import ConfigError, first_line

DeltaEngine = Literal["auto", "delta-rs", "delta-spark"]
CleanSource = Literal["off", "archive", "delete"]
LakehousePermissions = Literal["owner", "group"]
RuleAction = Literal["warn", "quarantine"]
ModelFamily = Literal["sklearn", "cnn"]

ENV_PREFIX = "XRAY_"
DEFAULT_CONFIG_FILE = "xray.toml"


@dataclass(frozen=True)
class XrayConfig:
    """Settings of the service. Field names are the config-file keys and, upper-cased behind ``XRAY_``,
    the environment variable names."""

    lakehouse: Path = Path("lakehouse")
    # Who may read what the service writes: owner only (umask 077) or also the group (027, read-only).
    lakehouse_permissions: LakehousePermissions = "owner"
    # Spark
    spark_master: str = "local[*]"
    spark_ui: bool = False
    shuffle_partitions: int = 4
    spark_conf: dict[str, str] = field(default_factory=dict)
    delta_engine: DeltaEngine = "auto"
    # The driver JVM maps Spark's classes from an archive in the user's cache (made by the first start).
    jvm_class_cache: bool = True
    # Streaming
    trigger_seconds: float = 1.0
    # A batch's fixed cost (planning, worker hand-over, commits: ~0.5-1 s) is paid per batch; executors hold
    # at most 256 files / 64 MB at once whatever the limit (`pipeline.fused`).
    max_files_per_trigger: int = 4000
    max_bytes_per_trigger: int = 0  # 0: no byte limit
    modified_after: str = ""  # ISO timestamp (UTC without a zone); older files are ignored (modifiedAfter)
    clean_source: CleanSource = "off"  # what happens to landing files once ingested
    # Symlinks in landing are followed only into landing itself or these folders (a site staging by symlink).
    landing_allowed_roots: tuple[str, ...] = ()
    # A landing file replaced under the same name (new size, modification time or inode) is ingested again.
    allow_overwrites: bool = True
    # A file written straight into landing is read once its writer closed it (file events) or it was moved
    # in; without events, once its modification time is this old or its bytes end like a whole image.
    landing_settle_seconds: float = 2.0
    # Data quality
    max_file_bytes: int = 64 * 1024 * 1024  # larger files are recorded without content and quarantined
    max_image_pixels: int = 40_000_000  # decompression-bomb guard
    min_image_side: int = 128  # smaller images are too small to be a diagnostic X-ray
    min_pixel_std: float = 2.0  # below this (0-255 scale) an image is blank/constant
    # DICOM images flagged BurnedInAnnotation=YES (text such as a name in the pixels): counted, or quarantined.
    burned_in_annotation: RuleAction = "warn"
    patient_id_salt: str = ""  # empty: a random salt generated once and kept under the lakehouse
    # Models
    mlflow_tracking_uri: str = ""  # empty: SQLite store under the lakehouse
    mlflow_registry_uri: str = ""  # empty: same as the tracking URI
    model_name: str = "xray_pneumonia_classifier"  # on Unity Catalog: catalog.schema.name
    # The operating point: the share of PNEUMONIA images the model must call PNEUMONIA (on patient-grouped
    # out-of-fold scores of the training data); the threshold is the highest that reaches it.
    target_sensitivity: float = 0.95
    # What `xray retrain` trains: scikit-learn on silver's features, or the convolutional network on silver's
    # frames (the optional extra `[cnn]`, README: Model families). Gold serves whichever family is champion.
    model_family: ModelFamily = "sklearn"
    # The cnn family's `xray retrain` ends within this many minutes, all steps included: training stops early
    # enough to leave the estimated time of the steps after it (0: no budget); the best epoch so far is kept
    # (`xray retrain --max-minutes`).
    retrain_max_minutes: float = 20.0
    mlflow_experiment: str = "xray-lakehouse"  # on Databricks: a workspace path such as /Shared/xray-lakehouse
    # Maintenance (xray maintain, and a pass inside xray stream every maintenance_interval_minutes; 0: off)
    maintenance_interval_minutes: float = 60.0
    # Files a table no longer references are deleted after this long (time travel reaches this far back).
    vacuum_retention_hours: int = 168
    # Unreferenced files never committed (a killed attempt's) are deleted once older than the longest batch.
    orphan_min_age_hours: float = 6.0
    # Periodic retraining (README: Periodic retraining): retrain, rescore, metrics inside continuous `xray stream`
    # every retrain_interval_hours and/or once retrain_min_new_labels new labelled silver rows or radiologist
    # feedback rows arrived; 0 turns each trigger off (both off by default: a new champion is an operator's
    # choice to automate). The triggers are checked every retrain_check_minutes.
    retrain_interval_hours: float = 0.0
    retrain_min_new_labels: int = 0
    retrain_check_minutes: float = 5.0
    # Drift and alerts (README: Drift and alerts). Minutes of 0 turn that alert off.
    drift_psi_threshold: float = 0.25  # PSI above this raises a drift alert (the usual rule of thumb)
    drift_window_images: int = 200  # drift compares the last N scored images with the training reference
    drift_min_images: int = 100  # ... once the window holds this many (fewer: sampling noise)
    alert_webhook_url: str = ""  # JSON POST of every alert; may hold a token: logged as scheme://host only
    alert_cooldown_minutes: float = 30.0  # a persisting condition alerts once per this many minutes
    alert_quarantine_rate: float = 0.2  # share of a batch's files quarantined
    alert_quarantine_min_files: int = 20  # ... in batches of at least this many files
    alert_stall_minutes: float = 15.0  # landing files wait and no bronze batch ran for this long
    alert_backlog_minutes: float = 60.0  # the oldest waiting landing file is older than this
    alert_champion_minutes: float = 30.0  # silver images wait this long for a champion model
    # Ingestion
    kaggle_dataset: str = "paultimothymooney/chest-xray-pneumonia"
    watch_stable_seconds: float = 2.0
    # DICOM networking (README: Receiving from a PACS). `xray receive`: a Storage SCP writing into landing.
    receive_port: int = 11112
    receive_ae_title: str = "XRAY"
    # Empty: every interface when receive_calling_aes is set (or with --allow-remote), else 127.0.0.1 only.
    receive_host: str = ""
    receive_calling_aes: tuple[str, ...] = ()  # calling AE titles let in; empty: any (loopback only by default)
    receive_peer_addresses: tuple[str, ...] = ()  # addresses or networks (10.1.0.0/16) let in; empty: any
    receive_tls_cert: str = ""  # PEM certificate and key: the receiver speaks DICOM over TLS
    receive_tls_key: str = ""
    receive_tls_ca: str = ""  # PEM CA bundle: peers must then present a certificate it signed
    receive_labels: dict[str, str] = field(default_factory=dict)  # calling AE = "LABEL" or "split/LABEL"
    receive_labels_file: str = ""  # a labels CSV (xray ingest-folder --labels) matched by SOPInstanceUID
    # A received study counts as complete after this long without a new instance (xray status).
    study_idle_seconds: float = 120.0
    # STOW-RS (DICOMweb) beside the C-STORE receiver of `xray receive`: POST /studies; 0 turns it off. A bearer
    # token is required; a non-loopback stow_host also needs --allow-remote (put TLS in front: a reverse proxy).
    stow_port: int = 0
    stow_host: str = "127.0.0.1"
    stow_token: str = ""
    # `xray send-results`: where the results' Structured Reports go, "AE@host:port" (empty: nowhere).
    results_destination: str = ""
    # The status page of `xray serve`: loopback by default (a non-loopback host also needs --allow-remote).
    serve_host: str = "127.0.0.1"
    serve_port: int = 8765
    # `xray sql` stops a query running longer than this (0: no limit); --timeout overrides it.
    sql_timeout_seconds: float = 60.0
    log_level: str = "INFO"

    # ---- derived locations -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The lakehouse root as an absolute path."""
        return Path(self.lakehouse).expanduser().resolve()

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def landing_dir(self) -> Path:
        return self.root / "landing"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def table_path(self, table_name: str) -> Path:
        """Where a Delta table lives: ``<root>/tables/<table_name>``."""
        return self.tables_dir / table_name

    def checkpoint_path(self, query_name: str) -> Path:
        """Where a streaming query keeps its checkpoint: ``<root>/checkpoints/<query>``."""
        return self.checkpoints_dir / query_name

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: configured, or a SQLite file under the lakehouse."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    def patient_salt(self) -> str:
        """The lakehouse's key for pseudonyms (HMAC of patient identifiers and paths, `streaming.core.pseudonym`);
        generated once for a new lakehouse when not configured (`streaming.core.lakehousekey`).

        Kept in a file readable only by its owner so raw identifiers cannot be recovered by hashing guesses.
        Once tables exist a missing or different key is a `ConfigError` saying to restore it from a backup.
        """
        from streaming.core.lakehousekey import lakehouse_key

        return lakehouse_key(self.root, self.patient_id_salt)

    def with_overrides(self, **overrides: Any) -> XrayConfig:
        """A copy with the given keys replaced (values parsed and checked like any other source)."""
        return _build({**self._as_raw(), **{k: v for k, v in overrides.items() if v is not None}}, "option")

    def _as_raw(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_HINTS = get_type_hints(XrayConfig)
_FLOAT_RANGES = {"target_sensitivity": (0.5, 1.0), "alert_quarantine_rate": (0.0, 1.0)}  # other numbers: >= 0
KEYS = tuple(f.name for f in fields(XrayConfig))


def _coerce(key: str, value: Any, source: str) -> Any:
    """Parse one value to the type its field declares; a bad value names the key and the source."""
    hint = _HINTS[key]
    try:
        if hint is Path:
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise ValueError("expected a path")
            return Path(value)
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            number = int(str(value).replace("_", ""))
            if number < 0:
                raise ValueError("expected a number >= 0")
            return number
        if hint is float:
            number = float(value)
            low, high = _FLOAT_RANGES.get(key, (0.0, float("inf")))
            if not low <= number <= high:
                raise ValueError(f"expected a number >= {low}" if high == float("inf")
                                 else f"expected a number from {low} to {high}")
            return number
        if get_origin(hint) is Literal:
            allowed = get_args(hint)
            if value not in allowed:
                raise ValueError(f"expected one of {', '.join(allowed)}")
            return value
        if get_origin(hint) is tuple:
            if isinstance(value, str):
                value = [item.strip() for item in value.split(os.pathsep) if item.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
                raise ValueError(f"expected a list of paths (in the environment: separated by {os.pathsep!r})")
            return tuple(str(v) for v in value)
        if get_origin(hint) is dict:
            if isinstance(value, str):
                pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError("expected key=value pairs separated by commas")
                value = {k.strip(): v.strip() for k, v in pairs}
            if not isinstance(value, dict):
                raise ValueError("expected a table of key = value")
            return {str(k): str(v) for k, v in value.items()}
        if hint is str:
            if isinstance(value, (dict, list)):
                raise ValueError("expected text")
            return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {key!r} from {source}: {value!r} ({error})") from None
    raise AssertionError(f"unhandled config type for {key}")  # pragma: no cover


def _build(raw: dict[str, Any], source: str) -> XrayConfig:
    values = {}
    for key, value in raw.items():
        if key not in _HINTS:
            raise ConfigError(f"unknown config key {key!r} in {source}; known keys: {', '.join(KEYS)}")
        values[key] = _coerce(key, value, source)
    return XrayConfig(**values)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a flat dict (keys are checked by `load_config`)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; create it or drop --config / XRAY_CONFIG")
    text = path.read_text()
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as error:  # any parser error is the user's file
        raise ConfigError(first_line(f"cannot parse config file {path}: {error}")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold key = value settings at the top level")
    # A `[xray]` table is accepted so the settings can share a file with other tools.
    return dict(data.get("xray", data))


def load_config(
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> XrayConfig:
    """Build the configuration from defaults, file, ``XRAY_*`` environment and explicit overrides.

    ``overrides`` whose value is None are ignored, so CLI options that were not given do not mask the
    environment.
    """
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    file_path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if file_path:
        raw.update(read_config_file(Path(file_path)))
        source = str(file_path)
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        raw.update(read_config_file(Path(DEFAULT_CONFIG_FILE)))
        source = DEFAULT_CONFIG_FILE
    else:
        source = "defaults"
    config = _build(raw, source)
    env_values = {
        key: environ[ENV_PREFIX + key.upper()] for key in KEYS if ENV_PREFIX + key.upper() in environ
    }
    for key, value in env_values.items():
        config = dataclasses.replace(config, **{key: _coerce(key, value, f"${ENV_PREFIX}{key.upper()}")})
    explicit = {k: v for k, v in overrides.items() if v is not None}
    for key, value in explicit.items():
        if key not in _HINTS:
            raise ConfigError(f"unknown config key {key!r}")
        config = dataclasses.replace(config, **{key: _coerce(key, value, f"option --{key.replace('_', '-')}")})
    _check_paths(config)
    _check_alerts(config)
    # Every command opens its lakehouse here: tables without their key are refused before anything runs.
    from streaming.core.lakehousekey import check_key

    check_key(config.root, config.patient_id_salt)
    return config


def _check_alerts(config: XrayConfig) -> None:
    # The URL is not quoted: it may hold a token.
    if config.alert_webhook_url and not config.alert_webhook_url.lower().startswith(("http://", "https://")):
        raise ConfigError("invalid 'alert_webhook_url': expected an http:// or https:// URL (or empty: no webhook)")
    if config.drift_min_images > config.drift_window_images:
        raise ConfigError(f"invalid 'drift_min_images' ({config.drift_min_images}): it must not exceed "
                          f"drift_window_images ({config.drift_window_images})")


def _check_paths(config: XrayConfig) -> None:
    root = Path(config.lakehouse).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"invalid 'lakehouse': {root} exists and is not a directory; choose another path")
