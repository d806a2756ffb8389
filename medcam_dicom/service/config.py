"""Service configuration: a dataclass with documented defaults, loaded once from a TOML file, then
environment variables (``MEDCAM_<FIELD>``), then command-line flags (highest precedence)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, 1-16 characters


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Destination:
    """Where results are sent: a DICOM node ``AE@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        match = re.fullmatch(r"(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})", text.strip())
        if not match or not AE_TITLE.match(match["ae"]) or not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"destination must look like AE@HOST:PORT, got {text!r}")
        return cls(match["ae"].strip(), match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``medcam-dicom serve`` needs.

    Attributes:
        ae_title: our AE title (the called AE title peers must use).
        bind, port: where the storage SCP listens.
        spool: folder for received instances, job records, results and the embedded queue.
        destination: where SEG/SC/SR go (``None``: results stay in the spool).
        allow: calling AE titles accepted; empty accepts any.
        allow_hosts: peer addresses accepted; empty accepts any.
        stable_seconds: quiet period after the last association touching a study before it is explained.
        models: model description files or shipped names, first match wins (empty: the demo models).
        max_associations: concurrent associations accepted.
        max_study_bytes: a study growing beyond this is refused (C-STORE status A700, out of resources).
        max_instance_bytes: one dataset larger than this is refused.
        workers: explainer worker threads in this process (0: none; run ``medcam-dicom worker`` elsewhere).
        queue_url: ``sqlite`` (embedded, in the spool) or ``redis://host:port/db`` for remote workers.
        device: torch device for the explainer (``None``: CUDA when available; ``cuda:N`` pins a GPU, one per
            worker process on a machine with several).
        threads: torch CPU threads of this process (``None``: ``OMP_NUM_THREADS`` when set, else the machine's
            cores shared out among its worker threads, at least 1 each), so that worker processes and threads
            on one machine do not contend.
        tls_certificate, tls_key: enable TLS on the SCP; tls_ca: require client certificates signed by it.
        uid_root, content_qualification: identity of the results (see :class:`OutputSettings`).
        overlays: ``findings`` (default) or ``all``: whose evidence gets a SEG and SC (see :class:`OutputSettings`).
        parametric_map: also send the soft mask of the drawn evidence as a Parametric Map.
        send_retries, send_backoff_seconds: sending attempts after the first, base of the exponential backoff.
        http_port: health/metrics endpoint on ``bind`` (0: off).
        payload_port: with a Redis queue, the serve node's payload channel on ``bind`` (HTTPS with the TLS
            settings) from which workers on other machines fetch studies and to which they report (0: off;
            the node's own workers use a loopback channel of their own).
        worker_tokens: serve node: the bearer tokens of the workers allowed on the payload channel (at
            least 16 characters each; keep them in ``MEDCAM_WORKER_TOKENS`` or a root-only config file).
        serve_url: worker: the serve node's payload channel, ``http(s)://host:payload_port``.
        worker_token: worker: its token (one of the serve node's ``worker_tokens``).
        worker_name: worker: its name in ``status`` and the logs (default ``host-pid``).
        lease_seconds: how long a worker's claim on a job lives without renewal (it renews every third).
        max_leases: a job leased this many times without finishing (its workers died; leases handed back
            after a failed send do not count) is failed.
    """

    ae_title: str = "MEDCAM"
    bind: str = "127.0.0.1"
    port: int = 11112
    spool: Path = Path("medcam-spool")
    destination: Destination | None = None
    allow: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    stable_seconds: float = 10.0
    models: tuple[str, ...] = ()
    max_associations: int = 10
    max_study_bytes: int = 4 * 1024**3
    max_instance_bytes: int = 1024**3
    workers: int = 1
    queue_url: str = "sqlite"
    device: str | None = None
    threads: int | None = None
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    uid_root: str | None = None
    content_qualification: str = "RESEARCH"
    overlays: str = "findings"
    parametric_map: bool = False
    send_retries: int = 5
    send_backoff_seconds: float = 5.0
    http_port: int = 0
    payload_port: int = 0
    worker_tokens: tuple[str, ...] = ()
    serve_url: str | None = None
    worker_token: str | None = None
    worker_name: str | None = None
    lease_seconds: float = 30.0
    max_leases: int = 5
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not AE_TITLE.match(self.ae_title):
            raise ConfigError(f"ae_title must be 1-16 printable characters without backslash, got {self.ae_title!r}")
        for title in self.allow:
            if not AE_TITLE.match(title):
                raise ConfigError(f"allow: {title!r} is not a valid AE title")
        for name in ("port", "http_port", "payload_port"):
            value = getattr(self, name)
            if not 0 <= value < 65536 or (name == "port" and value == 0):
                raise ConfigError(f"{name} must be a TCP port, got {value}")
        for name in ("max_associations", "max_study_bytes", "max_instance_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.workers < 0 or self.send_retries < 0 or self.stable_seconds < 0 or self.send_backoff_seconds < 0:
            raise ConfigError("workers, send_retries, stable_seconds and send_backoff_seconds must be >= 0")
        for token in (*self.worker_tokens, *([self.worker_token] if self.worker_token else [])):
            if len(token) < 16:
                raise ConfigError("worker tokens must have at least 16 characters (e.g. `openssl rand -hex 16`)")
        if self.lease_seconds < 1 or self.max_leases < 1:
            raise ConfigError("lease_seconds and max_leases must be >= 1")
        if self.serve_url is not None and not self.serve_url.startswith(("http://", "https://")):
            raise ConfigError(f"serve_url must be http(s)://host:port, got {self.serve_url!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ConfigError("tls_certificate and tls_key must be given together")
        if self.tls_ca is not None and self.tls_certificate is None:
            raise ConfigError("tls_ca (client certificates) needs tls_certificate and tls_key")
        if self.overlays not in ("findings", "all"):
            raise ConfigError(f"overlays must be 'findings' or 'all', got {self.overlays!r}")
        if not (self.queue_url == "sqlite" or self.queue_url.startswith(("redis://", "rediss://"))):
            raise ConfigError(f"queue_url must be 'sqlite' or redis://..., got {self.queue_url!r}")

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a TOML/env/flag value to the type of field ``name``."""
    kinds = {f.name: f.type for f in fields(ServiceConfig)}
    kind = str(kinds[name])
    try:
        if value is None:
            return None
        if name == "destination":
            return value if isinstance(value, Destination) else Destination.parse(str(value))
        if name in ("allow", "allow_hosts", "models", "worker_tokens"):
            if isinstance(value, str):
                value = [v for v in (part.strip() for part in value.split(",")) if v]
            return tuple(str(v) for v in value)
        if "Path" in kind:
            return Path(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"expected true or false, got {value!r}")
            return str(value).strip().lower() in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} from {source}: {error}") from error


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> ServiceConfig:
    """TOML file (optional) < ``MEDCAM_*`` environment variables < ``overrides`` (flags; ``None`` = unset)."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(ServiceConfig)} - {"extra"}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"config file {path}: {error}") from error
        section = raw.get("medcam", raw)
        unknown = set(section) - names
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v, str(path)) for k, v in section.items()})
    environ = os.environ if environ is None else environ
    for name in names:
        key = f"MEDCAM_{name.upper()}"
        if key in environ:
            values[name] = _coerce(name, environ[key], f"environment variable {key}")
    for name, value in (overrides or {}).items():
        if value is not None:
            if name not in names:
                raise ConfigError(f"unknown setting {name}")
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    try:
        return replace(ServiceConfig(), **values)
    except TypeError as error:
        raise ConfigError(str(error)) from error
