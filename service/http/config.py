"""The service's settings: a ``[service]`` table in a TOML (or JSON) file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: fields of the config file's ``[service]`` table, with their defaults
DEFAULTS = {
    "api_keys": [],
    "max_body_bytes": 25 * 1024 * 1024,
    "max_pixels": 40_000_000,
    "max_batch": 16,
    "watermark_key": None,  # the public default key when unset
    "ledger": None,
    "index": None,
    "detector": "auto",
    "trust": [],
    "idempotency_entries": 1024,
}


@dataclass(frozen=True)
class ServiceConfig:
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULTS["max_body_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    max_batch: int = DEFAULTS["max_batch"]
    watermark_key: str | None = None
    ledger: str | None = None
    index: str | None = None
    detector: str = "auto"
    trust: tuple[str, ...] = ()
    idempotency_entries: int = DEFAULTS["idempotency_entries"]

    @classmethod
    def load(cls, path: str | Path) -> ServiceConfig:
        """A TOML (or JSON) file with a ``[service]`` table; relative paths are taken from the
        file's folder. Unknown fields are refused (a typo must not silently drop a limit)."""
        from aigcguard.fileio import read_config

        path = Path(path)
        raw = read_config(path, "service config")
        table = raw.get("service", raw)
        unknown = sorted(set(table) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown service settings {unknown}")

        def rel(p):
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else path.parent / q)

        values = dict(table)
        for name in ("ledger", "index"):
            if values.get(name):
                values[name] = rel(values[name])
        values["trust"] = tuple(rel(t) for t in values.get("trust", []))
        values["api_keys"] = tuple(str(k) for k in values.get("api_keys", []))
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None
