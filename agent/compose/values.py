"""Compose value syntaxes: durations, byte sizes, commands, images, ports, volumes.

Each parser follows the compose specification's grammar for that field and raises
ValueError with a message meant for the person who wrote the file; callers add the file
and key path.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

from ..config import sum_duration_parts

# --- durations ------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_duration(value: Any) -> float:
    """Compose duration (`1m30s`, `10s`, `1.5s`, `500ms`; `0` alone) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 10s or 1m30s, got {value!r}")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise ValueError(f"a duration needs a unit: write {value}s")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 10s or 1m30s, got {value!r}")
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    total = sum_duration_parts(text, _DURATION_PART, _DURATION_UNITS)
    if total is None:
        raise ValueError(f"not a duration: {value!r} (e.g. 10s, 1m30s, 500ms)")
    return total


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string, the form Podman's health options take."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    whole, out = ms // 1000, ""
    for unit, size in (("h", 3600), ("m", 60)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    if whole or not out:
        out += f"{whole}s"
    return out


def whole_seconds(seconds: float) -> int:
    """Podman's --stop-timeout and systemd counters take whole seconds; round up."""
    return math.ceil(seconds)


# --- byte sizes -----------------------------------------------------------------------

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)


def parse_bytes(value: Any) -> int:
    """Compose byte value (`512m`, `1gb`, `2G`, `1024`) -> bytes (binary multiples)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512m or 1g, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 512m or 1g, got {value!r}")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"not a size: {value!r} (e.g. 512m, 1g, 1024)")
    power = " kmgtp".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)


def podman_size(size: int) -> str:
    """Bytes in the `<n><unit>` form Podman's size options read (`512m`, `1g`)."""
    for unit, power in (("t", 4), ("g", 3), ("m", 2), ("k", 1)):
        if size >= 1024**power and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)


# --- commands -------------------------------------------------------------------------


def command_words(value: Any) -> list[str]:
    """`command`/`entrypoint`: a list is taken as is, a string is split like a shell
    would (quotes honoured, no variable expansion), as Compose does."""
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r} into words: {exc}") from None
    raise ValueError(f"expected a string or a list, got {value!r}")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"expected a string, got {value!r}")


def scalar(value: Any) -> str:
    """A YAML scalar as Compose stringifies it (booleans lower case)."""
    return _scalar(value)


# --- images ---------------------------------------------------------------------------


def qualify_image(ref: str) -> str:
    """A fully qualified image reference, as Docker would resolve a short name.

    `postgres:16` -> `docker.io/library/postgres:16`, `ollama/ollama` ->
    `docker.io/ollama/ollama`; references that name a registry (a first component with a
    `.` or `:`, or `localhost`) are kept. Podman would otherwise consult its
    short-name configuration, which may pick another registry or prompt.
    """
    ref = ref.strip()
    if not ref:
        raise ValueError("the image reference is empty")
    first, slash, rest = ref.partition("/")
    if names_registry(ref):
        if first in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            return "docker.io/" + (rest if "/" in rest.split("@")[0] else "library/" + rest)
        return ref
    return "docker.io/" + (ref if slash else "library/" + ref)


def names_registry(ref: str) -> bool:
    """A first component with a `.` or `:`, or `localhost`: a registry, not a Docker Hub
    namespace (the rule Docker and Podman resolve short names by)."""
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def local_image(ref: str) -> str:
    """The reference a local build tags: `podman build -t mygw:staging` names the image
    `localhost/mygw:staging`, not Docker Hub's; one that names a registry is kept."""
    ref = ref.strip()
    if not ref:
        raise ValueError("the image reference is empty")
    return ref if names_registry(ref) else f"localhost/{ref}"


# --- ports ----------------------------------------------------------------------------

_PORT_RANGE = re.compile(r"\d+(?:-\d+)?")


def parse_port(spec: Any) -> dict[str, Any]:
    """Short port syntax `[[ip:]published:]target[/protocol]` -> the long form."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return {"target": str(spec), "protocol": "tcp"}
    if not isinstance(spec, str):
        raise ValueError(f"expected a port such as 8080:80, got {spec!r}")
    text, _, protocol = spec.strip().partition("/")
    host_ip: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"invalid port {spec!r}")
        host_ip, text = text[1:end], text[end + 2 :]
        parts = text.split(":")
        if len(parts) != 2:
            raise ValueError(f"invalid port {spec!r}")
        published, target = parts
    else:
        parts = text.split(":")
        if len(parts) == 1:
            published, target = None, parts[0]
        elif len(parts) == 2:
            published, target = parts
        else:
            host_ip, published, target = ":".join(parts[:-2]), parts[-2], parts[-1]
    for part in (target, published):
        if part and not _PORT_RANGE.fullmatch(part):
            raise ValueError(f"invalid port {spec!r}: {part!r} is not a port or a range")
    out: dict[str, Any] = {"target": target, "protocol": protocol or "tcp"}
    if published:
        out["published"] = published
    if host_ip:
        out["host_ip"] = host_ip
    return out


def port_count(text: str) -> int:
    low, _, high = text.partition("-")
    return int(high or low) - int(low) + 1


# --- volumes --------------------------------------------------------------------------

_MODE_OPTIONS = frozenset(
    {
        "ro",
        "rw",
        "z",
        "Z",
        "nocopy",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "consistent",
        "cached",
        "delegated",
    }
)
_PROPAGATION = frozenset({"shared", "rshared", "slave", "rslave", "private", "rprivate"})


def is_path(source: str) -> bool:
    """A bind-mount source (as opposed to a named volume): Compose's rule."""
    return source.startswith((".", "/", "~"))


def parse_volume(spec: str) -> dict[str, Any]:
    """Short volume syntax `[source:]target[:mode]` -> the long form (unresolved paths)."""
    parts = spec.split(":")
    mode: list[str] = []
    if len(parts) >= 2 and all(m in _MODE_OPTIONS for m in parts[-1].split(",")):
        mode = parts[-1].split(",")
        parts = parts[:-1]
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        source, target = parts
    else:
        raise ValueError(f"invalid volume {spec!r}: expected [source:]target[:mode]")
    if not target:
        raise ValueError(f"invalid volume {spec!r}: no target path")
    out: dict[str, Any] = {"type": "bind" if is_path(source) else "volume", "target": target}
    if source:
        out["source"] = source
    if "ro" in mode:
        out["read_only"] = True
    bind: dict[str, Any] = {"create_host_path": True} if out["type"] == "bind" else {}
    selinux = [m for m in mode if m in ("z", "Z")]
    if selinux:
        bind["selinux"] = selinux[-1]
    propagation = [m for m in mode if m in _PROPAGATION]
    if propagation:
        bind["propagation"] = propagation[-1]
    if bind:
        out["bind"] = bind
    if "nocopy" in mode:
        out["volume"] = {"nocopy": True}
    return out
