"""The manifest: what one backup is, written atomically beside its files.

A backup folder is complete exactly when it has a final name, and it only gets one after
its dump was verified and its manifest written; so a manifest is never about a partial
or unverified dump. Its times are ISO 8601 UTC, its sizes bytes, its checksums sha256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

SCHEMA = 1


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size_bytes": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any) -> FileInfo:
        if not isinstance(data, dict):
            raise ManifestError(f"file entry must be an object, got {data!r}")
        name, size, sha = data.get("name"), data.get("size_bytes"), data.get("sha256")
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise ManifestError(f"bad file name {name!r}")
        if not isinstance(size, int) or size < 0:
            raise ManifestError(f"bad size for {name}: {size!r}")
        if not isinstance(sha, str) or len(sha) != 64:
            raise ManifestError(f"bad sha256 for {name}: {sha!r}")
        return cls(name, size, sha)


@dataclass(frozen=True)
class Manifest:
    id: str
    database: str
    source: str
    started_at: float
    finished_at: float
    dump: FileInfo
    globals: FileInfo | None
    format: str = "custom"
    compression: str = "none"
    server_version: str = ""
    pg_dump_version: str = ""
    verified: bool = True
    verified_at: float | None = None
    verify_method: str = "pg_restore -f /dev/null (full read)"
    warnings: tuple[str, ...] = ()
    agent_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.dump.size + (self.globals.size if self.globals else 0)

    def with_verification(self, ok: bool, at: float) -> Manifest:
        return replace(self, verified=ok, verified_at=at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "database": self.database,
            "source": self.source,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "format": self.format,
            "compression": self.compression,
            "started_at": _iso_ms(self.started_at),
            "finished_at": _iso_ms(self.finished_at),
            "size_bytes": self.size,
            "dump": self.dump.to_dict(),
            "globals": self.globals.to_dict() if self.globals else None,
            "verified": self.verified,
            "verified_at": _iso_ms(self.verified_at),
            "verify_method": self.verify_method,
            "warnings": list(self.warnings),
            "agent_version": self.agent_version,
            **self.extra,
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError("not a JSON object")
        if data.get("schema") != SCHEMA:
            raise ManifestError(f"unknown manifest schema {data.get('schema')!r}")
        try:
            known = {
                "schema", "id", "database", "source", "server_version", "pg_dump_version",
                "format", "compression", "started_at", "finished_at", "size_bytes", "dump",
                "globals", "verified", "verified_at", "verify_method", "warnings",
                "agent_version",
            }  # fmt: skip
            return cls(
                id=_str(data, "id"),
                database=_str(data, "database"),
                source=_str(data, "source"),
                server_version=_str(data, "server_version", ""),
                pg_dump_version=_str(data, "pg_dump_version", ""),
                format=_str(data, "format"),
                compression=_str(data, "compression", "none"),
                started_at=_time(data["started_at"]),
                finished_at=_time(data["finished_at"]),
                dump=FileInfo.from_dict(data["dump"]),
                globals=FileInfo.from_dict(data["globals"]) if data.get("globals") else None,
                verified=bool(data["verified"]),
                verified_at=_time(data["verified_at"]) if data.get("verified_at") else None,
                verify_method=_str(data, "verify_method", ""),
                warnings=tuple(str(w) for w in data.get("warnings") or ()),
                agent_version=_str(data, "agent_version", ""),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except KeyError as exc:
            raise ManifestError(f"missing field {exc.args[0]!r}") from None


def _str(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ManifestError(f"field {key!r} must be a string, got {value!r}")
    return value


def _time(value: Any) -> float:
    if not isinstance(value, str):
        raise ManifestError(f"bad time {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ManifestError(f"bad time {value!r}") from None


def _iso_ms(ts: float | None) -> str | None:
    """Like iso(), with milliseconds: start and end of a short run differ below 1 s."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
