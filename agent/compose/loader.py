"""Load a compose project the way `docker compose` does, into one resolved model.

Order (compose-go's): the interpolation environment is the process environment over
the project's `.env` (or the `--env-file`s, which replace it); each `-f` file is parsed,
interpolated, normalized, then its `extends` and `include` are applied; the files are
merged in order with Compose's merge rules; profiles select the services; finally every
cross reference (depends_on, networks, volumes, secrets, network_mode...) is checked.
The project directory is the first file's directory, and every relative path of the
`-f` files is relative to it; paths in an extended or included file are relative to
that file's own directory.

Every file is untrusted input, and so are the files it names: see `files` (bounded
reads), `yamlload` (alias bombs, nesting), `interpolate` (bounded expansion). Here: at
most MAX_LOADS compose files parsed and MAX_PROJECT_VALUES values in all (an `include`
of the same file a thousand times, nested), includes at most MAX_INCLUDE_DEPTH deep,
the resolved project at most MAX_PROJECT_VALUES values (`extends` shares a base among
many services), and the extends and depends_on chains walked without recursion.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dotenv, schema
from .errors import ComposeError, did_you_mean, name_like, shown
from .files import Reader
from .interpolate import interpolate_tree
from .merge import enforce_unique, merge, strip_tags
from .normalize import Normalizer
from .report import Report
from .yamlload import parse

MAX_LOADS = 1000  # compose files parsed for one project (-f, include, extends)
MAX_PROJECT_VALUES = 1_000_000  # in all the files parsed, and in the resolved project
MAX_INCLUDE_DEPTH = 32


@dataclass
class LoadOptions:
    files: Sequence[Path]
    environ: Mapping[str, str]
    env_files: Sequence[Path] | None = None  # None: the project's .env, if present
    profiles: Sequence[str] = ()
    project_name: str | None = None
    # Services that may be depended on without being defined (stack mode: the managed
    # stack's own services, agent/stack/extra.py); converting maps them to their units.
    external: frozenset[str] = frozenset()


@dataclass
class Project:
    """A resolved compose project: every field in long syntax, paths absolute."""

    name: str
    directory: Path
    files: list[Path]
    environment: dict[str, str]
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)  # service -> defining file
    # the files the conversion reads (env_file, label_file...), within the same budget
    reader: Reader = field(default_factory=Reader, repr=False, compare=False)


_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_RESOURCES = ("services", "networks", "volumes", "secrets", "configs")


def normalize_project_name(name: str) -> str:
    """Compose's rule for names derived from a directory: lower case, [a-z0-9_-] only."""
    cleaned = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
    return cleaned


def read_environment(
    project_dir: Path,
    environ: Mapping[str, str],
    env_files: Sequence[Path] | None,
    reader: Reader | None = None,
) -> dict[str, str]:
    """The interpolation environment: the process environment wins over env files."""
    reader = reader or Reader()
    files = list(env_files) if env_files is not None else []
    if env_files is None and os.path.isfile(project_dir / ".env"):
        files = [project_dir / ".env"]
    values: dict[str, str] = {}
    for path in files:
        text = reader.text(path)
        values.update(dotenv.parse(text, path, lambda name: environ.get(name, values.get(name))))
    values.update(environ)
    return values


class _Loader:
    def __init__(self, options: LoadOptions, report: Report) -> None:
        self.options = options
        self.report = report
        self.home = options.environ.get("HOME")
        self.including: list[Path] = []
        self.extends_cache: dict[Path, dict[str, Any]] = {}
        self.origin: dict[str, Path] = {}
        self.reader = Reader()
        self.loads = 0
        self.values = 0

    # --- one file ---------------------------------------------------------------------

    def read(self, path: Path, base_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
        """Parse, check, interpolate and normalize one file (no extends/include yet)."""
        self.loads += 1
        if self.loads > MAX_LOADS:
            raise ComposeError(
                path, "(file)", f"the project parses more than {MAX_LOADS} compose files; refused"
            )
        doc = parse(self.reader.text(path), path)
        self.values += doc.values
        if self.values > MAX_PROJECT_VALUES:
            raise ComposeError(
                path,
                "(file)",
                f"the project's files hold more than {MAX_PROJECT_VALUES} values "
                "(includes repeated?); refused",
            )
        data = doc.data
        if data is None:
            raise ComposeError(path, "(top level)", "the file is empty")
        if not isinstance(data, dict):
            raise ComposeError(path, "(top level)", "expected a mapping of top-level keys")
        self.check_top_level(path, data, doc.key_marks)
        unset: dict[str, str] = {}
        data = interpolate_tree(data, env.get, str(path), (), unset)
        for name, where in sorted(unset.items()):
            self.report.note(
                "(interpolation)", where, f"${name} is not set; an empty string was used"
            )
        data = Normalizer(path, base_dir, self.home).top(data)
        for name in data.get("services") or {}:
            self.origin.setdefault(str(name), path)
        return data

    def check_top_level(
        self, path: Path, data: dict[str, Any], marks: Mapping[str, str] | None = None
    ) -> None:
        unknown = schema.unknown(data, schema.TOP_LEVEL)
        if unknown and "services" not in data:
            looks_v1 = [
                k
                for k in unknown
                if isinstance(data[k], dict) and ({"image", "build"} & set(data[k]))
            ]
            if looks_v1:
                raise ComposeError(
                    path,
                    looks_v1[0],
                    "this is the legacy Compose v1 format "
                    "(services at the top level); move them under 'services:' "
                    "(the current Compose specification)",
                )
        allowed = f"allowed: {', '.join(sorted(schema.TOP_LEVEL))} and x-*"
        for key in unknown:
            hint = did_you_mean(str(key), schema.TOP_LEVEL) if name_like(key) else ""
            if len(unknown) == len(data) and not hint:
                # no compose key at all: some other file (`include: [/etc/shadow]`);
                # its text is never echoed
                raise ComposeError(
                    path,
                    (marks or {}).get(str(key), "(top level)"),
                    f"not a compose file: none of its top-level keys is a compose key; {allowed}",
                )
            if not name_like(key):
                raise ComposeError(
                    path,
                    (marks or {}).get(str(key), "(top level)"),
                    f"unknown top-level key {shown(key)}; {allowed}",
                )
            raise ComposeError(path, key, f"unknown top-level key {key!r}{hint}; {allowed}")
        if "version" in data:
            self.report.note(
                "(project)",
                "version",
                "the 'version' key is obsolete in the Compose specification and was ignored",
            )

    def load(self, path: Path, base_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
        """One file, with its extends and includes applied."""
        data = self.read(path, base_dir, env)
        services = data.get("services") or {}
        for name in list(services):
            services[name] = self.extend(services, path, str(name), env)
        if "include" in data:
            self.include(path, data, env)
        return data

    # --- extends ----------------------------------------------------------------------

    def extend(
        self,
        services: dict[str, Any],
        file: Path,
        name: str,
        env: Mapping[str, str],
    ) -> dict[str, Any]:
        """The service with its extends chain applied (walked in a loop: a chain of
        thousands must not exhaust the stack); each resolved base is kept resolved."""
        chain: list[tuple[dict[str, Any], Path, str]] = []
        seen: set[tuple[Path, str]] = set()
        current: tuple[dict[str, Any], Path, str] = (services, file, name)
        while True:
            svcs, f, n = current
            svc = svcs[n]
            spec = svc.get("extends") if isinstance(svc, dict) else None
            if not isinstance(spec, dict):
                break
            if (f, n) in seen:
                steps = [(sf, sn) for _, sf, sn in chain] + [(f, n)]
                cycle = " -> ".join(f"{sn} ({sf.name})" for sf, sn in steps)
                raise ComposeError(f, ("services", n, "extends"), f"extends cycle: {cycle}")
            seen.add((f, n))
            chain.append(current)
            base_file = Path(spec["file"]) if "file" in spec else f
            base_name = str(spec["service"])
            if base_file == f:
                base_services = svcs
            else:
                if base_file not in self.extends_cache:
                    self.extends_cache[base_file] = self.read(base_file, base_file.parent, env)
                base_services = self.extends_cache[base_file].get("services") or {}
            if base_name not in base_services:
                raise ComposeError(
                    f,
                    ("services", n, "extends", "service"),
                    f"service {base_name!r} not found in {base_file}"
                    f"{did_you_mean(base_name, frozenset(base_services))}",
                )
            current = (base_services, base_file, base_name)
        base: dict[str, Any] = current[0][current[2]]
        for svcs, f, n in reversed(chain):
            local = {k: v for k, v in svcs[n].items() if k != "extends"}
            base = {k: v for k, v in base.items() if k != "extends"}
            base = merge(base, local, ("services", n), str(f))
            svcs[n] = base
        return base

    # --- include ----------------------------------------------------------------------

    def include(self, path: Path, data: dict[str, Any], env: Mapping[str, str]) -> None:
        for i, entry in enumerate(data.pop("include")):
            files = [Path(p) for p in entry["path"]]
            for f in files:
                if f in self.including or f == path:
                    chain = " -> ".join(str(p) for p in [*self.including, path, f])
                    raise ComposeError(path, ("include", i), f"include cycle: {chain}")
            if len(self.including) >= MAX_INCLUDE_DEPTH:
                raise ComposeError(
                    path,
                    ("include", i),
                    f"includes nested more than {MAX_INCLUDE_DEPTH} levels deep; refused",
                )
            project_dir = Path(entry["project_directory"] or files[0].parent)
            env_files = entry["env_file"]
            if env_files is None and os.path.isfile(project_dir / ".env"):
                env_files = [str(project_dir / ".env")]
            included_env: dict[str, str] = {}
            for env_file in env_files or []:
                text = self.reader.text(Path(env_file))
                included_env.update(dotenv.parse(text, env_file, env.get))
            included_env.update(env)
            self.including.append(path)
            try:
                sub: dict[str, Any] = {}
                for f in files:
                    sub = merge(sub, self.load(f, project_dir, included_env), (), str(f))
            finally:
                self.including.pop()
            for section in _RESOURCES:
                if not sub.get(section):
                    continue
                mine = data.get(section)
                if mine is None:  # absent, or `services:` with nothing under it
                    mine = data[section] = {}
                for name, value in sub[section].items():
                    if name in mine and mine[name] != value:
                        raise ComposeError(
                            path,
                            ("include", i),
                            f"{section}.{name} from "
                            f"{files[0]} conflicts with the definition in this "
                            "file",
                        )
                    mine[name] = value

    # --- project ----------------------------------------------------------------------

    def project(self) -> Project:
        options = self.options
        if not options.files:
            raise ComposeError(None, "-f", "no compose file given")
        files = [_resolved(f) for f in options.files]
        project_dir = files[0].parent
        env = read_environment(project_dir, options.environ, options.env_files, self.reader)
        merged: dict[str, Any] = {}
        for path in files:
            merged = merge(merged, self.load(path, project_dir, env), (), str(path))
        merged = enforce_unique(strip_tags(merged))
        _check_size(merged, files[0])
        name = self.project_name(merged, project_dir, env, files[0])
        project = Project(
            name=name,
            directory=project_dir,
            files=files,
            environment=dict(env),
            services=dict(merged.get("services") or {}),
            networks=dict(merged.get("networks") or {}),
            volumes=dict(merged.get("volumes") or {}),
            secrets=dict(merged.get("secrets") or {}),
            configs=dict(merged.get("configs") or {}),
            origin=self.origin,
            reader=self.reader,
        )
        if not project.services:
            raise ComposeError(files[0], "services", "the project defines no services")
        self.apply_profiles(project, env, files[0])
        validate(project, files[0], options.external)
        return project

    def project_name(
        self, data: dict[str, Any], project_dir: Path, env: Mapping[str, str], file: Path
    ) -> str:
        explicit = self.options.project_name or data.get("name")
        if explicit:
            if not isinstance(explicit, str) or not _PROJECT_NAME.fullmatch(explicit):
                raise ComposeError(
                    file,
                    "name",
                    f"invalid project name {explicit!r}: use lower "
                    "case letters, digits, '-' and '_', starting with a letter "
                    "or digit",
                )
            return explicit
        name = normalize_project_name(env.get("COMPOSE_PROJECT_NAME") or project_dir.name)
        if not name:
            raise ComposeError(
                file,
                "name",
                f"cannot derive a project name from "
                f"{project_dir.name!r}; set 'name:' or --project-name",
            )
        return name

    def apply_profiles(self, project: Project, env: Mapping[str, str], file: Path) -> None:
        active = set(self.options.profiles)
        if not active and env.get("COMPOSE_PROFILES"):
            active = {p.strip() for p in env["COMPOSE_PROFILES"].split(",") if p.strip()}
        enabled = {
            name: svc
            for name, svc in project.services.items()
            if not svc.get("profiles") or "*" in active or active & set(svc["profiles"])
        }
        for name, svc in enabled.items():
            for dep, spec in list((svc.get("depends_on") or {}).items()):
                if dep in project.services and dep not in enabled:
                    if spec.get("required", True):
                        profiles = ", ".join(project.services[dep].get("profiles") or [])
                        raise ComposeError(
                            file,
                            ("services", name, "depends_on", dep),
                            f"depends on {dep!r}, which is only enabled with --profile {profiles}",
                        )
                    del svc["depends_on"][dep]
                    self.report.note(
                        name,
                        f"depends_on.{dep}",
                        "optional dependency (required: false) disabled by profiles; dropped",
                    )
        for name in sorted(set(project.services) - set(enabled)):
            self.report.note(
                name,
                "profiles",
                "not enabled by the active profiles "
                f"({', '.join(sorted(active)) or 'none'}); not converted",
            )
        project.services = enabled


def validate(project: Project, file: Path, external: frozenset[str] = frozenset()) -> None:
    """Cross references must resolve (a dependency on an `external` service is one that
    the project does not define), and depends_on must not loop."""
    services = project.services
    for name, svc in services.items():
        where = project.origin.get(name, file)
        if "image" not in svc and "build" not in svc:
            raise ComposeError(where, ("services", name), "has neither 'image' nor 'build'")
        for dep in svc.get("depends_on") or {}:
            if dep not in services and dep not in external:
                raise ComposeError(
                    where,
                    ("services", name, "depends_on", dep),
                    f"depends on undefined service {dep!r}{did_you_mean(dep, frozenset(services))}",
                )
        for net in svc.get("networks") or {}:
            if net not in project.networks and net != "default":
                raise ComposeError(
                    where,
                    ("services", name, "networks", net),
                    f"refers to undefined network {net!r}; declare it under "
                    "the top-level 'networks:'",
                )
        for i, vol in enumerate(svc.get("volumes") or []):
            source = vol.get("source")
            if (
                vol.get("type") == "volume"
                and source
                and (not isinstance(source, str) or source not in project.volumes)
            ):
                raise ComposeError(
                    where,
                    ("services", name, "volumes", i),
                    f"refers to undefined volume {source!r}; declare it under "
                    "the top-level 'volumes:'",
                )
        for kind in ("secrets", "configs"):
            declared = getattr(project, kind)
            for i, ref in enumerate(svc.get(kind) or []):
                if not isinstance(ref["source"], str) or ref["source"] not in declared:
                    raise ComposeError(
                        where,
                        ("services", name, kind, i),
                        f"refers to undefined {kind[:-1]} {ref['source']!r}",
                    )
        mode = svc.get("network_mode")
        if isinstance(mode, str) and mode.startswith("service:") and mode[8:] not in services:
            raise ComposeError(
                where,
                ("services", name, "network_mode"),
                f"refers to undefined service {mode[8:]!r}",
            )
    _check_cycles(project, file)


def _check_cycles(project: Project, file: Path) -> None:
    """Depth-first search for a depends_on cycle, with an explicit stack (a chain of
    thousands of services must not exhaust Python's); reports the first cycle found in
    the same order as a recursive walk over the sorted names would."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for root in sorted(project.services):
        if state.get(root) == 2:
            continue
        chain: list[str] = [root]
        state[root] = 1
        # each service's dependencies, sorted and reversed: pop() takes the next one
        pending = [_defined_deps(project, root)]
        while chain:
            if not pending[-1]:
                state[chain.pop()] = 2
                pending.pop()
                continue
            dep = pending[-1].pop()
            if state.get(dep) == 2:
                continue
            if state.get(dep) == 1:
                cycle = [*chain[chain.index(dep) :], dep]
                raise ComposeError(
                    project.origin.get(dep, file),
                    ("services", dep, "depends_on"),
                    f"dependency cycle: {' -> '.join(cycle)}",
                )
            state[dep] = 1
            chain.append(dep)
            pending.append(_defined_deps(project, dep))


def _defined_deps(project: Project, name: str) -> list[str]:
    """A service's dependencies the project defines (an external one cannot loop back),
    sorted and reversed: pop() takes the next one."""
    deps = project.services[name].get("depends_on") or {}
    return sorted((d for d in deps if d in project.services), reverse=True)


def _resolved(path: Path) -> Path:
    """The absolute path of a -f file (a symlink loop is a ComposeError, not a crash)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:
        raise ComposeError(path, "(file)", f"cannot resolve the path: {exc}") from None


def _check_size(data: dict[str, Any], file: Path) -> None:
    """The resolved project holds at most MAX_PROJECT_VALUES values: `extends` and
    `include` share one base among many services, and each service is converted whole."""
    todo: list[Any] = [data]
    seen = 0
    while todo:
        item = todo.pop()
        seen += 1
        if seen > MAX_PROJECT_VALUES:
            raise ComposeError(
                file,
                "(project)",
                f"the project holds more than {MAX_PROJECT_VALUES} values once extends "
                "and includes are applied; refused",
            )
        if isinstance(item, dict):
            todo.extend(item.values())
            seen += len(item)  # the keys
        elif isinstance(item, list):
            todo.extend(item)


def load_project(options: LoadOptions, report: Report) -> Project:
    """Read the compose files of `options` into one resolved Project."""
    return _Loader(options, report).project()
