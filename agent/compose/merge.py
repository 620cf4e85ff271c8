"""Merge normalized compose trees with Compose's rules (`-f` overlays and `extends`).

From the compose specification (merge) and compose-go's implementation: mappings merge
key by key, scalars are replaced, sequences are appended, except:
- `command`, `entrypoint` and `healthcheck.test` are replaced, never appended;
- `environment`, `labels`, `annotations`, `sysctls`, `depends_on`, `networks`... are
  maps after normalization, so a later file's entry replaces an earlier one per key;
- `volumes` are unique by container path, `ports` by (ip, published, target,
  protocol), `secrets` and `configs` by target, `extra_hosts`, `dns`, `env_file`,
  `tmpfs`, capabilities, devices... by value: a later entry replaces an earlier equal one;
- `logging` options merge only when both files use the same driver;
- `x-` keys are replaced whole;
- `!reset` removes the inherited value, `!override` replaces it without merging.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from .errors import ComposeError, format_path
from .yamlload import Tagged

Path_ = tuple[str, ...]

_REPLACE = {
    ("services", "*", "command"),
    ("services", "*", "entrypoint"),
    ("services", "*", "healthcheck", "test"),
    ("services", "*", "ulimits", "*"),
}


def _volume_key(v: Any) -> Any:
    return v.get("target") if isinstance(v, dict) else v


def _port_key(p: Any) -> Any:
    if not isinstance(p, dict):
        return p
    return (p.get("host_ip"), p.get("published"), p.get("target"), p.get("protocol", "tcp"))


def _secret_key(default_dir: str) -> Callable[[Any], Any]:
    def key(s: Any) -> Any:
        if not isinstance(s, dict):
            return s
        target = s.get("target") or s.get("source")
        return target if str(target).startswith("/") else f"{default_dir}/{target}"

    return key


def _identity(v: Any) -> Any:
    return repr(v)


def _env_file_key(e: Any) -> Any:
    return e.get("path") if isinstance(e, dict) else e


def _subnet_key(c: Any) -> Any:
    return c.get("subnet") if isinstance(c, dict) else repr(c)


_UNIQUE: dict[Path_, Callable[[Any], Any]] = {
    ("services", "*", "volumes"): _volume_key,
    ("services", "*", "ports"): _port_key,
    ("services", "*", "secrets"): _secret_key("/run/secrets"),
    ("services", "*", "configs"): _secret_key(""),
    ("services", "*", "env_file"): _env_file_key,
    ("networks", "*", "ipam", "config"): _subnet_key,
    **{
        ("services", "*", k): _identity
        for k in (
            "extra_hosts",
            "dns",
            "dns_opt",
            "dns_search",
            "tmpfs",
            "cap_add",
            "cap_drop",
            "devices",
            "profiles",
            "security_opt",
            "group_add",
            "expose",
            "links",
            "external_links",
            "volumes_from",
            "device_cgroup_rules",
            "label_file",
        )
    },
}


def _matches(path: Path_, pattern: Path_) -> bool:
    return len(path) == len(pattern) and all(
        p == "*" or p == q for p, q in zip(pattern, path, strict=True)
    )


@cache
def _replaced(path: Path_) -> bool:
    return any(_matches(path, p) for p in _REPLACE)


@cache
def _unique(path: Path_) -> Callable[[Any], Any] | None:
    for pattern, key in _UNIQUE.items():
        if _matches(path, pattern):
            return key
    return None


def dedupe(items: list[Any], key: Callable[[Any], Any]) -> list[Any]:
    """Later entries replace earlier ones with the same key, in the earlier one's place."""
    out: list[Any] = []
    index: dict[Any, int] = {}
    for item in items:
        k = key(item)
        try:
            hash(k)
        except TypeError:  # a value of the wrong shape (a list as a port's target...)
            k = repr(k)
        if k in index:
            out[index[k]] = item
        else:
            index[k] = len(out)
            out.append(item)
    return out


def _is_logging(path: Path_) -> bool:
    return len(path) == 3 and path[0] == "services" and path[2] == "logging"


def _other_driver(base: Any, over: Any) -> bool:
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return False
    return "driver" in base and "driver" in over and base["driver"] != over["driver"]


def merge(base: Any, over: Any, path: Path_ = (), file: str | None = None) -> Any:
    """`over` merged onto `base` (neither is modified)."""
    if isinstance(over, Tagged):
        return over  # resolved by strip_tags: !reset drops the key, !override replaces
    if isinstance(base, Tagged):
        base = base.value if base.tag == "override" else None
    if over is None:
        return base
    if base is None:
        return over
    if _replaced(path):
        return over
    if _is_logging(path) and _other_driver(base, over):
        return over  # options of another log driver do not apply
    if isinstance(base, dict):
        if not isinstance(over, dict):
            raise ComposeError(
                file,
                format_path(path),
                "cannot merge: a mapping is overridden by a value of another kind",
            )
        out = dict(base)
        for key, value in over.items():
            if key not in out or str(key).startswith("x-"):
                out[key] = value
            else:
                out[key] = merge(out[key], value, (*path, str(key)), file)
        return out
    if isinstance(base, list):
        if not isinstance(over, list):
            raise ComposeError(
                file,
                format_path(path),
                "cannot merge: a list is overridden by a value of another kind",
            )
        combined = [*base, *over]
        key = _unique(path)
        return dedupe(combined, key) if key else combined
    return over


def strip_tags(node: Any) -> Any:
    """Apply what is left of `!reset` (drop) and `!override` (keep the value) tags."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if isinstance(value, Tagged):
                if value.tag == "reset":
                    continue
                value = value.value
            out[key] = strip_tags(value)
        return out
    if isinstance(node, list):
        return [
            strip_tags(v.value if isinstance(v, Tagged) else v)
            for v in node
            if not (isinstance(v, Tagged) and v.tag == "reset")
        ]
    if isinstance(node, Tagged):
        return None if node.tag == "reset" else strip_tags(node.value)
    return node


def enforce_unique(data: dict[str, Any]) -> dict[str, Any]:
    """Drop repeated entries within one file too (Compose's "unicity" pass after merging)."""
    for name, svc in (data.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        for key, value in svc.items():
            unique = _unique(("services", str(name), key))
            if unique and isinstance(value, list):
                svc[key] = dedupe(value, unique)
    return data
