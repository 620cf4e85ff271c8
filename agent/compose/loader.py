"""Load a compose project the way `docker compose` does, into one resolved model.

Order (compose-go's): the interpolation environment is the process environment over
the project's `.env` (or the `--env-file`s, which replace it); each `-f` file is parsed,
interpolated, normalized, then its `extends` and `include` are applied; the files are
merged in order with Compose's merge rules; profiles select the services; finally every
cross reference (depends_on, networks, volumes, secrets, network_mode...) is checked.
The project directory is the first file's directory, and every relative path of the
`-f` files is relative to it; paths in an extended or included file are relative to
that file's own directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dotenv, schema
from .errors import ComposeError, did_you_mean
from .interpolate import interpolate_tree
from .merge import enforce_unique, merge, strip_tags
from .normalize import Normalizer
from .report import Report
from .yamlload import load_file


@dataclass
class LoadOptions:
    files: Sequence[Path]
    environ: Mapping[str, str]
    env_files: Sequence[Path] | None = None  # None: the project's .env, if present
    profiles: Sequence[str] = ()
    project_name: str | None = None


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


_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_RESOURCES = ("services", "networks", "volumes", "secrets", "configs")


def normalize_project_name(name: str) -> str:
    """Compose's rule for names derived from a directory: lower case, [a-z0-9_-] only."""
    cleaned = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
    return cleaned


def read_environment(
    project_dir: Path, environ: Mapping[str, str], env_files: Sequence[Path] | None
) -> dict[str, str]:
    """The interpolation environment: the process environment wins over env files."""
    files = list(env_files) if env_files is not None else []
    if env_files is None and (project_dir / ".env").is_file():
        files = [project_dir / ".env"]
    values: dict[str, str] = {}
    for path in files:
        values.update(dotenv.load(path, lambda name: environ.get(name, values.get(name))))
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

    # --- one file ---------------------------------------------------------------------

    def read(self, path: Path, base_dir: Path, env: Mapping[str, str]) -> dict[str, Any]:
        """Parse, check, interpolate and normalize one file (no extends/include yet)."""
        data = load_file(path)
        if data is None:
            raise ComposeError(path, "(top level)", "the file is empty")
        if not isinstance(data, dict):
            raise ComposeError(path, "(top level)", "expected a mapping of top-level keys")
        self.check_top_level(path, data)
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

    def check_top_level(self, path: Path, data: dict[str, Any]) -> None:
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
        for key in unknown:
            raise ComposeError(
                path,
                key,
                f"unknown top-level key {key!r}"
                f"{did_you_mean(key, schema.TOP_LEVEL)}; allowed: "
                f"{', '.join(sorted(schema.TOP_LEVEL))} and x-*",
            )
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
            services[name] = self.extend(services, path, str(name), env, [])
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
        stack: list[tuple[Path, str]],
    ) -> dict[str, Any]:
        svc = services[name]
        spec = svc.get("extends") if isinstance(svc, dict) else None
        if not isinstance(spec, dict):
            return svc  # type: ignore[no-any-return]
        if (file, name) in stack:
            chain = " -> ".join(f"{n} ({f.name})" for f, n in [*stack, (file, name)])
            raise ComposeError(file, ("services", name, "extends"), f"extends cycle: {chain}")
        base_file = Path(spec["file"]) if "file" in spec else file
        base_name = str(spec["service"])
        if base_file == file:
            base_services = services
        else:
            if base_file not in self.extends_cache:
                self.extends_cache[base_file] = self.read(base_file, base_file.parent, env)
            base_services = self.extends_cache[base_file].get("services") or {}
        if base_name not in base_services:
            raise ComposeError(
                file,
                ("services", name, "extends", "service"),
                f"service {base_name!r} not found in {base_file}"
                f"{did_you_mean(base_name, frozenset(base_services))}",
            )
        base = self.extend(base_services, base_file, base_name, env, [*stack, (file, name)])
        base_services[base_name] = base
        local = {k: v for k, v in svc.items() if k != "extends"}
        base = {k: v for k, v in base.items() if k != "extends"}
        merged: dict[str, Any] = merge(base, local, ("services", name), str(file))
        return merged

    # --- include ----------------------------------------------------------------------

    def include(self, path: Path, data: dict[str, Any], env: Mapping[str, str]) -> None:
        for i, entry in enumerate(data.pop("include")):
            files = [Path(p) for p in entry["path"]]
            for f in files:
                if f in self.including or f == path:
                    chain = " -> ".join(str(p) for p in [*self.including, path, f])
                    raise ComposeError(path, ("include", i), f"include cycle: {chain}")
            project_dir = Path(entry["project_directory"] or files[0].parent)
            env_files = entry["env_file"]
            if env_files is None and (project_dir / ".env").is_file():
                env_files = [str(project_dir / ".env")]
            included_env: dict[str, str] = {}
            for env_file in env_files or []:
                included_env.update(dotenv.load(Path(env_file), env.get))
            included_env.update(env)
            self.including.append(path)
            try:
                sub: dict[str, Any] = {}
                for f in files:
                    sub = merge(sub, self.load(f, project_dir, included_env), (), str(f))
            finally:
                self.including.pop()
            for section in _RESOURCES:
                mine = data.setdefault(section, {}) if sub.get(section) else data.get(section)
                for name, value in (sub.get(section) or {}).items():
                    assert mine is not None
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
        files = [f.resolve() for f in options.files]
        project_dir = files[0].parent
        env = read_environment(project_dir, options.environ, options.env_files)
        merged: dict[str, Any] = {}
        for path in files:
            merged = merge(merged, self.load(path, project_dir, env), (), str(path))
        merged = enforce_unique(strip_tags(merged))
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
        )
        if not project.services:
            raise ComposeError(files[0], "services", "the project defines no services")
        self.apply_profiles(project, env, files[0])
        validate(project, files[0])
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


def validate(project: Project, file: Path) -> None:
    """Cross references must resolve, and depends_on must not loop."""
    services = project.services
    for name, svc in services.items():
        where = project.origin.get(name, file)
        if "image" not in svc and "build" not in svc:
            raise ComposeError(where, ("services", name), "has neither 'image' nor 'build'")
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
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
            if vol.get("type") == "volume" and source and source not in project.volumes:
                raise ComposeError(
                    where,
                    ("services", name, "volumes", i),
                    f"refers to undefined volume {source!r}; declare it under "
                    "the top-level 'volumes:'",
                )
        for kind in ("secrets", "configs"):
            declared = getattr(project, kind)
            for i, ref in enumerate(svc.get(kind) or []):
                if ref["source"] not in declared:
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
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*chain[chain.index(name) :], name]
            raise ComposeError(
                project.origin.get(name, file),
                ("services", name, "depends_on"),
                f"dependency cycle: {' -> '.join(cycle)}",
            )
        state[name] = 1
        for dep in sorted(project.services[name].get("depends_on") or {}):
            visit(dep, [*chain, name])
        state[name] = 2

    for name in sorted(project.services):
        visit(name, [])


def load_project(options: LoadOptions, report: Report) -> Project:
    """Read the compose files of `options` into one resolved Project."""
    return _Loader(options, report).project()
