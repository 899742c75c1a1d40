"""The daemon's settings: defaults < TOML file < CONVERTD_* environment < command-line flags.

Resolved once into a frozen `Config`; nothing else reads the environment or the config file.
Where a setting names a place inside the data directory, `files.DataDir` makes the path.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from convertd.drops.rules import ORIGINALS, RuleError, WatchRule, parse_rules
from convertd.fetch import parse_networks
from convertd.presets import Preset, PresetError, parse_tables

APP_NAME = "convertd"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470


# Settings whose TOML value is a list.
LIST_SETTINGS = (
    "import_url_allow",
    "cors_origins",
    "webhook_allow",
    "webhook_retry_seconds",
    "health_tools",
)
# The waits between a webhook's tries: ten tries in all, up to an hour apart (3 h 52 min).
WEBHOOK_RETRY_SECONDS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 3600.0, 3600.0)
# The system tools /health requires: the converters' (soffice stands for LibreOffice, found as
# soffice or libreoffice). The optional ones (chromium, qpdf, ocrmypdf) are only reported.
HEALTH_TOOLS = ("ffmpeg", "ffprobe", "pdftoppm", "soffice")
LOG_FORMATS = ("auto", "text", "json", "journal")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # the choice's one home is loops.py
JOURNAL_SOCKET = "/run/systemd/journal/socket"


class ConfigError(Exception):
    """A setting has a value convertd cannot use; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: Path
    # Several nodes: a PostgreSQL URL instead of the SQLite file in the data dir, and the folder
    # every node mounts for the files (the data dir keeps the node's own: lock, scratch space).
    database: str | None = None
    storage: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    # Largest accepted request body for uploads, in bytes (sum of all files in one request).
    max_upload_bytes: int = 1024**3
    # An upload that sends nothing for this long is dropped (slow-loris clients hold sockets).
    upload_idle_timeout_seconds: float = 30.0
    retention_seconds: int = 24 * 3600
    sweep_interval_seconds: int = 60
    job_timeout_seconds: int = 600
    # A job whose process died under it is tried again this many times in all.
    max_attempts: int = 3
    shutdown_grace_seconds: float = 30.0
    # Honour X-Forwarded-For/-Proto/-Host only when a reverse proxy is known to set them.
    trust_proxy: bool = False
    max_image_pixels: int = 100_000_000
    # Longer audio or video (by its own header) is refused before FFmpeg decodes any of it.
    max_media_seconds: int = 6 * 3600
    # Warm LibreOffice instances (0: as many as workers), started with the daemon or on first use.
    office_instances: int = 0
    office_prewarm: bool = True
    office_recycle_after: int = 200
    # An interpreter with LibreOffice's `uno` module, tried before the usual system paths.
    uno_python: str | None = None
    # Drop folders (see drops/rules.py): the embedded inbox lives under drop_root.
    drop_root: Path | None = None
    drop_enabled: bool = True
    drop_settle_seconds: float = 2.0
    drop_max_wait_seconds: float = 3600.0
    drop_scan_seconds: float = 60.0
    drop_events: bool = True  # false: find files by periodic scans only
    drop_originals: str = "move"
    # The [[watch]] tables, parsed (drops/rules.py); checked against the converters at start-up.
    watch_rules: tuple[WatchRule, ...] = ()
    # The [[preset]] tables, by shape (presets.py); checked against the converters at start-up.
    presets: tuple[Preset, ...] = ()
    # Networks (CIDRs) that import/url may fetch from although they are private or loopback,
    # e.g. a NAS on the LAN; everything else non-public is refused (fetch.py).
    import_url_allow: tuple[str, ...] = ()
    import_url_timeout_seconds: float = 300.0
    # Origins whose pages may read the API's answers (CORS); "*" is any, without credentials.
    cors_origins: tuple[str, ...] = ("*",)
    # Webhooks go to loopback and public addresses; private networks (a LAN) only when listed
    # here, since a POST can still change things on a router or a NAS (events/sender.py).
    webhook_allow: tuple[str, ...] = ()
    webhook_retry_seconds: tuple[float, ...] = WEBHOOK_RETRY_SECONDS
    # How clients reach this server, for the links inside webhook payloads (no request is at
    # hand when they are sent); by default http://HOST:PORT as bound.
    public_url: str | None = None
    # capture-website and html -> pdf in Chromium (browser/): a page gets this long in all, and
    # the browser this much data memory (RLIMIT_DATA; V8's heap is held below it).
    capture_timeout_seconds: float = 60.0
    capture_memory_mb: int = 2048
    # Chromium's path; by default the first of chromium, chromium-browser on PATH.
    chromium: str | None = None
    # The longest a /sync/v2 request waits for its job or task to end.
    sync_wait_seconds: float = 300.0
    # /health fails below this much free space in the data dir, or when one of these tools
    # is not on PATH (an empty list: no tool is required).
    health_min_free_bytes: int = 1024**3
    health_tools: tuple[str, ...] = HEALTH_TOOLS
    # Logs: text lines, JSON lines, or the journal's native protocol (auto: the journal when
    # stderr is connected to it, as under systemd, else text).
    log_format: str = "auto"
    journal_socket: str = JOURNAL_SOCKET
    # GET /metrics for Prometheus (api/metrics.py), behind a key with the `metrics` scope;
    # false: no endpoint, and requests are not counted.
    metrics_enabled: bool = True
    # The event loop (loops.py): auto is uvloop where it is installed, else asyncio's own.
    event_loop: str = "auto"
    # systemd's readiness socket ($NOTIFY_SOCKET), set by Type=notify units.
    notify_socket: str | None = None
    # systemd's watchdog ($WATCHDOG_USEC, for the process $WATCHDOG_PID names if set) and
    # whether stderr is the journal ($JOURNAL_STREAM, "device:inode" of the stream).
    watchdog_usec: int | None = None
    watchdog_pid: int | None = None
    journal_stream: str | None = None

    @property
    def watchdog_seconds(self) -> float | None:
        """How often to tell systemd's watchdog all is well (half its timeout), if it watches
        this process."""
        if not self.watchdog_usec or not self.watched_here:
            return None
        return self.watchdog_usec / 2e6

    @property
    def watched_here(self) -> bool:
        """Whether $WATCHDOG_PID (when set) names this process. The single-file executable
        runs as two: PyInstaller's bootloader, which systemd started (and names), and this
        Python process, its child, which stands for it."""
        if not self.watchdog_pid or self.watchdog_pid == os.getpid():
            return True
        return bool(getattr(sys, "frozen", False)) and self.watchdog_pid == os.getppid()

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        # A wildcard bind is reached on loopback at least.
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
        host = wildcard.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def office_pool_size(self) -> int:
        return self.office_instances or max(1, self.workers)


# Setting name -> converter from its text form (for env vars and TOML strings).
def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _networks(value: Any) -> tuple[str, ...]:
    """A TOML list, or comma-separated text (the environment), of CIDRs."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ValueError("expected a list of networks")
    parse_networks(items)
    return tuple(x.strip() for x in items if x.strip())


def _origins(value: Any) -> tuple[str, ...]:
    """A TOML list, or comma-separated text, of origins such as https://nas.lan:8443, or *."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ValueError("expected a list of origins")
    origins = tuple(x.strip().rstrip("/") for x in items if x.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin such as https://example.com")
    return origins


def _seconds_list(value: Any) -> tuple[float, ...]:
    """A TOML list, or comma-separated text, of waits in seconds (at least one, none negative)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("expected a list of seconds")
    waits = tuple(float(x) for x in items if str(x).strip())
    if not waits or any(not 0 <= w <= 86400 for w in waits):  # NaN fails this too
        raise ValueError("expected one or more waits from 0 to 86400 seconds")
    return waits


def _tools(value: Any) -> tuple[str, ...]:
    """A TOML list, or comma-separated text, of program names (found on PATH)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ValueError("expected a list of program names")
    tools = tuple(x.strip() for x in items if x.strip())
    if any("/" in tool or len(tool) > 64 for tool in tools):
        raise ValueError("expected program names such as ffmpeg, not paths")
    return tools


def _database_url(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{value!r} is not a PostgreSQL URL such as postgresql://convertd@nas/db")
    return text


def _url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")) or "?" in text or "#" in text:
        raise ValueError(f"{value!r} is not a base URL such as https://convert.home.lan")
    return text


_PARSERS: dict[str, Any] = {
    "data_dir": lambda v: Path(v).expanduser(),
    "database": _database_url,
    "storage": lambda v: Path(v).expanduser(),
    "host": str,
    "port": int,
    "workers": int,
    "max_upload_bytes": int,
    "upload_idle_timeout_seconds": float,
    "retention_seconds": int,
    "sweep_interval_seconds": int,
    "job_timeout_seconds": int,
    "max_attempts": int,
    "shutdown_grace_seconds": float,
    "trust_proxy": _to_bool,
    "max_image_pixels": int,
    "max_media_seconds": int,
    "office_instances": int,
    "office_prewarm": _to_bool,
    "office_recycle_after": int,
    "uno_python": str,
    "drop_root": lambda v: Path(v).expanduser(),
    "drop_enabled": _to_bool,
    "drop_settle_seconds": float,
    "drop_max_wait_seconds": float,
    "drop_scan_seconds": float,
    "drop_events": _to_bool,
    "drop_originals": str,
    "import_url_allow": _networks,
    "cors_origins": _origins,
    "import_url_timeout_seconds": float,
    "sync_wait_seconds": float,
    "webhook_allow": _networks,
    "webhook_retry_seconds": _seconds_list,
    "public_url": _url,
    "capture_timeout_seconds": float,
    "capture_memory_mb": int,
    "chromium": str,
    "health_min_free_bytes": int,
    "health_tools": _tools,
    "log_format": lambda v: str(v).strip().lower(),
    "journal_socket": str,
    "metrics_enabled": _to_bool,
    "event_loop": lambda v: str(v).strip().lower(),
}
# Settings that take one of a few words.
_CHOICES = {"drop_originals": ORIGINALS, "log_format": LOG_FORMATS, "event_loop": EVENT_LOOPS}

_POSITIVE = {
    "workers": 0,
    "max_upload_bytes": 1,
    "upload_idle_timeout_seconds": 0.1,
    "retention_seconds": 1,
    "sweep_interval_seconds": 1,
    "job_timeout_seconds": 1,
    "max_attempts": 1,
    "max_image_pixels": 1,
    "max_media_seconds": 1,
    "office_instances": 0,
    "office_recycle_after": 1,
    "drop_settle_seconds": 0.05,
    "drop_max_wait_seconds": 1,
    "drop_scan_seconds": 0.2,
    "import_url_timeout_seconds": 1,
    "sync_wait_seconds": 0.1,
    "capture_timeout_seconds": 1,
    "capture_memory_mb": 256,
    "health_min_free_bytes": 0,
}


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _parse(name: str, value: Any, source: str) -> Any:
    try:
        parsed = _PARSERS[name](value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: setting {name!r} has an invalid value {value!r}") from exc
    minimum = _POSITIVE.get(name)
    if minimum is not None and parsed < minimum:
        raise ConfigError(f"{source}: setting {name!r} must be at least {minimum}")
    if name in _CHOICES and parsed not in _CHOICES[name]:
        raise ConfigError(f"{source}: setting {name!r} must be one of {', '.join(_CHOICES[name])}")
    if name == "port" and not 0 <= parsed <= 65535:
        raise ConfigError(f"{source}: setting 'port' must be between 0 and 65535")
    return parsed


def _read_toml(path: Path) -> tuple[dict[str, Any], Any, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    # Settings may sit at the top level or under [server]; watch rules are [[watch]] tables,
    # presets [[preset]] tables.
    table = data.get("server", data)
    settings = {
        k: v for k, v in table.items() if not isinstance(v, dict | list) or k in LIST_SETTINGS
    }
    return settings, data.get("watch"), data.get("preset")


def load_config(
    *,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the settings once, from every source, in precedence order."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}

    explicit_path = config_path or (
        Path(env["CONVERTD_CONFIG"]) if env.get("CONVERTD_CONFIG") else None
    )
    path = explicit_path or default_config_path()
    watch_tables: Any = None
    preset_tables: Any = None
    if explicit_path is not None or path.exists():
        settings, watch_tables, preset_tables = _read_toml(path)
        for name, value in settings.items():
            if name not in _PARSERS:
                raise ConfigError(f"{path}: unknown setting {name!r}")
            values[name] = _parse(name, value, str(path))

    for name in _PARSERS:
        raw = env.get(f"CONVERTD_{name.upper()}")
        if raw:
            values[name] = _parse(name, raw, f"CONVERTD_{name.upper()}")

    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _parse(name, value, f"--{name.replace('_', '-')}")

    values.setdefault("data_dir", default_data_dir())
    try:
        values["watch_rules"] = parse_rules(watch_tables, values.get("drop_originals", "move"))
        values["presets"] = parse_tables(preset_tables)
    except (RuleError, PresetError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    values["notify_socket"] = env.get("NOTIFY_SOCKET") or None
    values["watchdog_usec"] = _env_int(env, "WATCHDOG_USEC")
    values["watchdog_pid"] = _env_int(env, "WATCHDOG_PID")
    values["journal_stream"] = env.get("JOURNAL_STREAM") or None
    if env is os.environ:
        # Read once, then gone, as sd_notify's unset_environment has it: under NotifyAccess=all
        # (the single-file executable's units) a tool convertd runs must not inherit the socket.
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)
    return Config(**values)


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    """A positive number systemd passes (a malformed one is ignored, as libsystemd does)."""
    raw = env.get(name, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None
