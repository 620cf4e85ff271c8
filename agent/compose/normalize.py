"""Bring one compose file into a single canonical shape, right after interpolation.

Compose accepts most fields in a short and a long syntax (`ports: ["8080:80"]` or a
mapping per port, `environment` as a list or a map...). Merging files, applying
`extends` and converting are only correct if they all see one shape, so every file is
normalized first: long syntax everywhere, key/value fields as ordered maps, relative
paths made absolute against the directory they are relative to (the project directory
for `-f` files, the file's own directory for `extends` and `include` targets). Unknown
keys and wrongly typed values are reported here, with the file and the key path.

Names of services, networks, volumes, secrets and configs become file names (`web.container`,
`app-data.volume`) and unit names, so they must follow Compose's rule
(`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) before anything else sees them: `../../x`, `/etc/x` or a
name holding a newline is refused here, never written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from . import schema
from .errors import ComposeError, KeyPath, did_you_mean
from .values import parse_port, parse_volume, scalar
from .yamlload import Tagged

# Compose's rule for the names of services, networks, volumes, secrets and configs
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_KIND = {
    "services": "service",
    "networks": "network",
    "volumes": "volume",
    "secrets": "secret",
    "configs": "config",
}


class Normalizer:
    """Normalizes the dict of one file; `base_dir` anchors its relative paths."""

    def __init__(self, file: Path, base_dir: Path, home: str | None) -> None:
        self.file = file
        self.base_dir = base_dir
        self.home = home

    # --- helpers ----------------------------------------------------------------------

    def fail(self, path: KeyPath, message: str) -> ComposeError:
        return ComposeError(self.file, path, message)

    def path(self, value: Any, where: KeyPath) -> str:
        """A filesystem path made absolute against base_dir (`~` is the user's home)."""
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a path, got {value!r}")
        if value == "~" or value.startswith("~/"):
            if not self.home:
                raise self.fail(where, "cannot expand '~': HOME is not set")
            value = self.home + value[1:]
        return os.path.normpath(os.path.join(self.base_dir, value))

    def str_list(self, value: Any, where: KeyPath) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.fail(where, f"expected a string or a list, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(scalar(item))
            except ValueError:
                raise self.fail((*where, i), f"expected a string, got {_kind(item)}") from None
        return out

    def mapping(
        self, value: Any, where: KeyPath, *, bare: str | None = None, sep: str = "="
    ) -> dict[str, str | None]:
        """`[K=V, K]` or `{K: V}` -> ordered {K: V}; a bare K maps to `bare`."""
        out: dict[str, str | None] = {}
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str | int | float) or isinstance(item, bool):
                    raise self.fail((*where, i), f"expected KEY{sep}VALUE, got {_kind(item)}")
                key, found, val = str(item).partition(sep)
                out[key] = val if found else bare
            return out
        if isinstance(value, dict):
            for key, val in value.items():
                if val is None:
                    out[str(key)] = bare
                elif isinstance(val, str | int | float | bool):
                    out[str(key)] = scalar(val)
                else:
                    raise self.fail((*where, str(key)), f"expected a string, got {_kind(val)}")
            return out
        raise self.fail(where, f"expected a list or a mapping, got {_kind(value)}")

    def check_keys(self, value: Any, known: frozenset[str], where: KeyPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in schema.unknown(value, known):
            raise self.fail((*where, key), f"unknown key {key!r}{did_you_mean(key, known)}")
        return value

    def names(self, section: dict[Any, Any], key: str) -> dict[str, Any]:
        """The section with every name checked against Compose's rule (a number, as
        YAML reads `1:`, becomes its text as Compose reads it)."""
        out: dict[str, Any] = {}
        for name, value in section.items():
            text = str(name) if isinstance(name, int) and not isinstance(name, bool) else name
            if not isinstance(text, str) or not NAME.fullmatch(text):
                raise self.fail(
                    (key, str(name)),
                    f"not a valid {_KIND[key]} name: use letters, digits, '_', '.' and '-', "
                    "starting with a letter or digit",
                )
            if text in out:
                raise self.fail((key, text), f"{_KIND[key]} {text!r} is defined twice")
            out[text] = value
        return out

    # --- top level --------------------------------------------------------------------

    def top(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in ("networks", "volumes", "secrets", "configs"):
            section = data.get(key)
            if section is None:
                if key in data:
                    data[key] = {}
                continue
            if not isinstance(section, dict):
                raise self.fail((key,), f"expected a mapping, got {_kind(section)}")
            section = data[key] = self.names(section, key)
            known = {"networks": schema.NETWORK, "volumes": schema.VOLUME}.get(key, schema.SECRET)
            for name, entry in list(section.items()):
                if entry is None:
                    section[name] = {}
                    continue
                self.check_keys(entry, known, (key, name))
                for field in ("labels", "driver_opts"):
                    if field in entry:
                        entry[field] = self.mapping(entry[field], (key, name, field), bare="")
                if key in ("secrets", "configs") and "file" in entry:
                    entry["file"] = self.path(entry["file"], (key, name, "file"))
        services = data.get("services")
        if services is not None:
            if not isinstance(services, dict):
                raise self.fail(("services",), f"expected a mapping, got {_kind(services)}")
            services = data["services"] = self.names(services, "services")
            for name, svc in services.items():
                if svc is None:
                    svc = services[name] = {}
                services[name] = self.service(svc, ("services", str(name)))
        if "include" in data:
            data["include"] = self.include(data["include"])
        return data

    def include(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(("include",), f"expected a list, got {_kind(value)}")
        out = []
        for i, entry in enumerate(value):
            where: KeyPath = ("include", i)
            if isinstance(entry, str):
                entry = {"path": entry}
            entry = self.check_keys(
                entry, frozenset({"path", "project_directory", "env_file"}), where
            )
            if "path" not in entry:
                raise self.fail(where, "missing 'path'")
            paths = [
                self.path(p, (*where, "path"))
                for p in self.str_list(entry["path"], (*where, "path"))
            ]
            project_dir = entry.get("project_directory")
            env_files = entry.get("env_file")
            out.append(
                {
                    "path": paths,
                    "project_directory": self.path(project_dir, (*where, "project_directory"))
                    if project_dir
                    else None,
                    "env_file": [
                        self.path(p, (*where, "env_file"))
                        for p in self.str_list(env_files, (*where, "env_file"))
                    ]
                    if env_files is not None
                    else None,
                }
            )
        return out

    # --- services ---------------------------------------------------------------------

    def service(self, svc: Any, where: KeyPath) -> dict[str, Any]:
        if isinstance(svc, Tagged):
            svc = svc.value
        svc = self.check_keys(svc, schema.SERVICE, where)
        for key, value in list(svc.items()):
            if isinstance(value, Tagged):
                if value.tag == "reset":
                    continue
                svc[key] = Tagged("override", self.field(key, value.value, (*where, key)))
            elif value is None and key not in ("environment", "labels", "networks"):
                continue
            else:
                svc[key] = self.field(key, value, (*where, key))
        return dict(svc)

    def field(self, key: str, value: Any, where: KeyPath) -> Any:
        """One key in its long syntax; a value of a shape the handler's own checks did
        not expect is a ComposeError naming the key, never a traceback."""
        handler = getattr(self, f"_f_{key}", None)
        if handler is None:
            return value
        try:
            return handler(value, where)
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            raise self.fail(where, f"invalid value: {exc}") from None

    def _f_environment(self, value: Any, where: KeyPath) -> dict[str, str | None]:
        return self.mapping(value if value is not None else {}, where, bare=None)

    def _f_labels(self, value: Any, where: KeyPath) -> dict[str, str | None]:
        return self.mapping(value if value is not None else {}, where, bare="")

    _f_annotations = _f_labels

    def _f_sysctls(self, value: Any, where: KeyPath) -> dict[str, str | None]:
        return self.mapping(value, where, bare="")

    def _f_extra_hosts(self, value: Any, where: KeyPath) -> list[str]:
        pairs: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for host, ips in value.items():
                for ip in ips if isinstance(ips, list) else [ips]:
                    pairs.append((str(host), scalar(ip)))
        else:
            for i, item in enumerate(self.str_list(value, where)):
                sep = "=" if "=" in item else ":"
                host, found, ip = item.partition(sep)
                if not found or not host or not ip:
                    raise self.fail((*where, i), f"expected HOST:IP or HOST=IP, got {item!r}")
                pairs.append((host, ip.strip("[]")))
        return [f"{h}={ip}" for h, ip in pairs]

    def _f_depends_on(self, value: Any, where: KeyPath) -> dict[str, dict[str, Any]]:
        default = {"condition": "service_started", "required": True, "restart": False}
        if isinstance(value, list):
            return {name: dict(default) for name in self.str_list(value, where)}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a list or a mapping, got {_kind(value)}")
        out = {}
        for name, spec in value.items():
            entry = dict(default)
            if spec is not None:
                entry.update(self.check_keys(spec, schema.DEPENDS_ON, (*where, name)))
            condition = entry["condition"]
            if not isinstance(condition, str) or condition not in schema.CONDITIONS:
                raise self.fail(
                    (*where, name, "condition"),
                    f"unknown condition "
                    f"{entry['condition']!r}; expected one of "
                    f"{', '.join(sorted(schema.CONDITIONS))}",
                )
            out[str(name)] = entry
        return out

    def _f_networks(self, value: Any, where: KeyPath) -> dict[str, dict[str, Any] | None]:
        if value is None:
            return {}
        if isinstance(value, list):
            return {name: None for name in self.str_list(value, where)}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a list or a mapping, got {_kind(value)}")
        out: dict[str, dict[str, Any] | None] = {}
        for name, spec in value.items():
            out[str(name)] = (
                None
                if spec is None
                else self.check_keys(spec, schema.SERVICE_NETWORK, (*where, name))
            )
        return out

    def _f_ports(self, value: Any, where: KeyPath) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        out = []
        long_keys = frozenset(
            {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"}
        )
        for i, item in enumerate(value):
            if isinstance(item, dict):
                port = dict(self.check_keys(item, long_keys, (*where, i)))
                if "target" not in port:
                    raise self.fail((*where, i), "missing 'target'")
                port["target"] = scalar(port["target"])
                if port.get("published") is not None:
                    port["published"] = scalar(port["published"])
                port.setdefault("protocol", "tcp")
            else:
                try:
                    port = parse_port(item)
                except ValueError as exc:
                    raise self.fail((*where, i), str(exc)) from None
            out.append(port)
        return out

    def _f_expose(self, value: Any, where: KeyPath) -> list[str]:
        return self.str_list(value, where)

    def _f_volumes(self, value: Any, where: KeyPath) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        long_keys = frozenset(
            {
                "type",
                "source",
                "target",
                "read_only",
                "bind",
                "volume",
                "tmpfs",
                "image",
                "consistency",
            }
        )
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                try:
                    vol = parse_volume(item)
                except ValueError as exc:
                    raise self.fail((*where, i), str(exc)) from None
            else:
                vol = dict(self.check_keys(item, long_keys, (*where, i)))
                if "type" not in vol:
                    raise self.fail((*where, i), "missing 'type' (volume, bind, tmpfs...)")
                if "target" not in vol:
                    raise self.fail((*where, i), "missing 'target'")
            if vol["type"] == "bind":
                if "source" not in vol:
                    raise self.fail((*where, i), "a bind mount needs a 'source'")
                vol["source"] = self.path(vol["source"], (*where, i, "source"))
            out.append(vol)
        return out

    def _f_env_file(self, value: Any, where: KeyPath) -> list[dict[str, Any]]:
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            at: KeyPath = (*where, i) if isinstance(value, list) else where
            if isinstance(item, str):
                item = {"path": item}
            item = dict(self.check_keys(item, frozenset({"path", "required", "format"}), at))
            if "path" not in item:
                raise self.fail(at, "missing 'path'")
            item["path"] = self.path(item["path"], (*at, "path"))
            item.setdefault("required", True)
            out.append(item)
        return out

    def _f_label_file(self, value: Any, where: KeyPath) -> list[str]:
        return [self.path(p, where) for p in self.str_list(value, where)]

    def _f_secrets(self, value: Any, where: KeyPath) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        known = frozenset({"source", "target", "uid", "gid", "mode"})
        out = []
        for i, item in enumerate(value):
            entry = (
                {"source": item}
                if isinstance(item, str)
                else dict(self.check_keys(item, known, (*where, i)))
            )
            if "source" not in entry:
                raise self.fail((*where, i), "missing 'source'")
            out.append(entry)
        return out

    _f_configs = _f_secrets

    def _f_extends(self, value: Any, where: KeyPath) -> dict[str, Any]:
        if isinstance(value, str):
            return {"service": value}
        value = dict(self.check_keys(value, frozenset({"service", "file"}), where))
        if "service" not in value:
            raise self.fail(where, "missing 'service'")
        if "file" in value:
            value["file"] = self.path(value["file"], (*where, "file"))
        return dict(value)

    def _f_build(self, value: Any, where: KeyPath) -> dict[str, Any]:
        if not isinstance(value, str | dict):
            raise self.fail(where, f"expected a string or a mapping, got {_kind(value)}")
        build = {"context": value} if isinstance(value, str) else dict(value)
        context = build.get("context", ".")
        if isinstance(context, str) and "://" not in context and not context.startswith("git@"):
            build["context"] = self.path(context, (*where, "context"))
        return build

    def _list(self, value: Any, where: KeyPath) -> list[str]:
        return self.str_list(value, where)

    _f_tmpfs = _f_dns = _f_dns_search = _f_dns_opt = _f_cap_add = _f_cap_drop = _list
    _f_devices = _f_profiles = _f_security_opt = _f_group_add = _f_links = _list
    _f_external_links = _f_volumes_from = _f_device_cgroup_rules = _list

    def _f_healthcheck(self, value: Any, where: KeyPath) -> dict[str, Any]:
        return dict(self.check_keys(value, schema.HEALTHCHECK, where))

    def _f_deploy(self, value: Any, where: KeyPath) -> dict[str, Any]:
        return dict(self.check_keys(value, schema.DEPLOY, where))

    def _f_ulimits(self, value: Any, where: KeyPath) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        dict: "a mapping",
        list: "a list",
        str: f"the string {value!r}",
        bool: f"{value}",
        int: f"the number {value}",
        float: f"the number {value}",
    }.get(type(value), repr(value))
