"""Extra services in the managed stack: the compose projects of `stack.extra`.

Each project is read by the real compose importer (agent/compose/) in stack mode, at
every apply and whenever its files change, so what `aistack import-compose --into-stack`
showed is what `aistack up` runs:
- a `depends_on` on a core service the project does not define (`postgres`, or `db`,
  PostgreSQL's name under compose) becomes `Requires=`/`After=postgres.service`
  (`Wants=` for `required: false`); a dependency on a disabled core service is refused;
- a project service that *is* a core one (its name, or `db` for PostgreSQL, and that
  service's image) is the managed one: not converted, its dependents use the managed
  unit; a database under another name stays the project's own;
- every container also joins `aistack.network` (where the managed PostgreSQL answers as
  `postgres` and `db`), and `SuccessExitStatus=143`: a stop's SIGTERM is no failure;
- units are named `<project>-<service>` (the importer's names), and a unit file or
  container name that a core service or another project has is refused by name.

`members(stack)` is the one catalogue at run time: core + extras in start order, cached
by the compose files' stamps (an edited file is seen without a reload). A project that
stops loading is left out of it (`problems(stack)` names it, for doctor); the core stack
goes on. The interpolation environment is the project's `.env` only, never the process
environment: the CLI and the agent read a project the same way.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ExtraConfig, StackConfig
from ..quadlet import PodmanVersion, UnitFile
from .model import NETWORK, SERVICES, Member, core_members, enabled_names

# The compose importer is imported only where a project is converted (below): on a host
# without stack.extra the agent never loads it (about 3 MB of its RSS).
if TYPE_CHECKING:
    from ..compose.loader import Project
    from ..compose.report import Report

DEFAULT_TARGET = PodmanVersion(5, 0)
# The agent's unit has ProtectHome=yes: it cannot read a project under these.
UNREADABLE = ("/home", "/root", "/run/user")


@functools.cache
def core_names() -> Mapping[str, str]:
    """A compose name of a core service -> that service (`db` is PostgreSQL under compose)."""
    from ..compose.stackconfig import ROLES

    return {alias: role.name for role in ROLES for alias in (role.name, *role.resolves_as)}


@functools.cache
def _role_key() -> Mapping[str, str]:
    from ..compose.stackconfig import ROLES

    return {role.name: role.key for role in ROLES}


class ExtraError(Exception):
    """A project of stack.extra cannot join the stack; one line per problem, named."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Converted:
    """One project, converted for the stack: its unit files and its members."""

    project: str
    index: int  # its place in stack.extra
    units: Mapping[str, str]  # file name -> text
    members: tuple[Member, ...]  # in start order
    adopted: Mapping[str, str]  # compose service -> the core service it is
    lossy: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Extras:
    """Every project of stack.extra that can join, and why the others cannot."""

    projects: tuple[Converted, ...] = ()
    problems: Mapping[str, str] = field(default_factory=dict)  # project -> why not

    @property
    def files(self) -> dict[str, str]:
        return {name: text for p in self.projects for name, text in p.units.items()}

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(m.name for p in self.projects for m in p.members)

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(m for p in self.projects for m in p.members)


def _where(index: int, entry: ExtraConfig) -> str:
    return f"stack.extra[{index}] ({entry.project})"


def check_files(index: int, entry: ExtraConfig) -> list[str]:
    """Files the agent can read at all: absolute, and not where ProtectHome hides them."""
    out = []
    for i, path in enumerate(entry.files):
        if not path.is_absolute():
            out.append(f"stack.extra[{index}].files[{i}]: must be an absolute path")
        elif any(str(path) == d or str(path).startswith(d + "/") for d in UNREADABLE):
            out.append(
                f"stack.extra[{index}].files[{i}]: {path} is under /home, /root or /run/user, "
                "which the agent cannot read (its unit has ProtectHome=yes); move the project "
                "to /srv or /opt"
            )
    return out


def _load(index: int, entry: ExtraConfig) -> tuple[Project, Report]:
    from ..compose.errors import ComposeError, visible
    from ..compose.loader import LoadOptions, load_project
    from ..compose.report import Report

    report = Report()
    options = LoadOptions(
        files=list(entry.files),
        environ={},
        profiles=list(entry.profiles),
        project_name=entry.project,
        external=frozenset(core_names()),
    )
    try:
        return load_project(options, report), report
    except ComposeError as exc:
        raise ExtraError([f"{_where(index, entry)}: {visible(exc.render())}"]) from None


def _adopt(project: Project, enabled: frozenset[str], where: str) -> dict[str, str]:
    """Take the project's copies of core services out: the managed ones stand in."""
    from ..compose.stackconfig import role_of_image

    adopted: dict[str, str] = {}
    for name, svc in sorted(project.services.items()):
        core = core_names().get(name)
        image = svc.get("image")
        if core is None or not isinstance(image, str) or role_of_image(image) != _role_key()[core]:
            continue  # its own service (a database under another name stays its own)
        if core not in enabled:
            raise ExtraError([f"{where}: services.{name} is the stack's {core}, which is "
                              f"disabled (stack.{_role_key()[core]}.enabled: false)"])  # fmt: skip
        adopted[name] = core
    for name in adopted:
        del project.services[name]
    return adopted


def _external(project: Project, enabled: frozenset[str], where: str) -> dict[str, str]:
    """Dependencies on services the project does not define: the core ones' units."""
    out: dict[str, str] = {}
    for name, svc in sorted(project.services.items()):
        for dep in sorted(svc.get("depends_on") or {}):
            if dep in project.services:
                continue
            core = core_names()[dep]  # the loader let only these through
            if core not in enabled:
                raise ExtraError([
                    f"{where}: services.{name}.depends_on.{dep}: needs the stack's {core}, "
                    f"which is disabled (stack.{_role_key()[core]}.enabled: false)"
                ])  # fmt: skip
            out[dep] = f"{core}.service"
    return out


def _words(unit: UnitFile, key: str) -> list[str]:
    return [w for value in unit.values("Unit", key) for w in value.split()]


def _stack_mode(unit: UnitFile) -> None:
    """Every container on the stack's network too, and SIGTERM's 143 a clean stop."""
    if not any(v.split(":")[0] in ("host", "none") or v.startswith("container:")
               for v in unit.values("Container", "Network")):  # fmt: skip
        unit.add("Container", "Network", NETWORK)
    unit.add("Service", "SuccessExitStatus", "143")


def _start_order(units: Mapping[str, UnitFile]) -> list[str]:
    """Container stems so that each comes after what it needs (Requires=/Wants=/After=)."""
    pending = sorted(units)
    done: list[str] = []
    while pending:
        for stem in pending:
            needs = {w.removesuffix(".service") for k in ("Requires", "Wants", "After")
                     for w in _words(units[stem], k)}  # fmt: skip
            if not (needs & set(pending)):
                done.append(stem)
                pending.remove(stem)
                break
        else:  # a loop the loader would have refused; keep the names' order
            done.extend(pending)
            break
    return done


def convert_entry(
    index: int, entry: ExtraConfig, stack: StackConfig, target: PodmanVersion
) -> Converted:
    """One project of stack.extra as the stack runs it; ExtraError names what is wrong.
    Lossy settings are listed in `lossy`: the caller refuses them unless allowed."""
    from ..compose.convert import convert
    from ..compose.errors import ComposeError, visible

    where = _where(index, entry)
    if problems := check_files(index, entry):
        raise ExtraError(problems)
    project, report = _load(index, entry)
    enabled = frozenset(enabled_names(stack))
    adopted = _adopt(project, enabled, where)
    if not project.services:
        raise ExtraError([f"{where}: every service of the project is a core one; nothing "
                          "to add"])  # fmt: skip
    external = _external(project, enabled, where)
    try:
        units = convert(project, target, report, external)
    except ComposeError as exc:
        raise ExtraError([f"{where}: {visible(exc.render())}"]) from None
    containers = {u.stem: u for u in units if u.name.endswith(".container")}
    for unit in containers.values():
        _stack_mode(unit)
    core = frozenset(enabled)
    members = []
    for stem in _start_order(containers):
        unit = containers[stem]
        known = set(containers) | core
        requires = [w.removesuffix(".service") for w in _words(unit, "Requires")]
        wants = [w.removesuffix(".service") for w in _words(unit, "Wants")]
        members.append(Member(
            name=stem,
            container=(unit.values("Container", "ContainerName") or [stem])[0],
            project=project.name,
            requires=tuple(r for r in requires if r in known),
            wants=tuple(w for w in wants if w in known),
            oneshot="oneshot" in unit.values("Service", "Type"),
            ports=tuple(unit.values("Container", "PublishPort")),
            files=tuple(project.files),
        ))  # fmt: skip
    final = report.sorted()
    return Converted(
        project=project.name,
        index=index,
        units={u.name: u.render() for u in units},
        members=tuple(members),
        adopted=adopted,
        lossy=tuple(str(item) for item in final.lossy),
        notes=tuple(str(item) for item in final.notes),
    )


def core_files() -> frozenset[str]:
    """The unit file names of the core stack (every service's, enabled or not)."""
    names = {NETWORK, *(s.template for s in SERVICES), *(s.volume for s in SERVICES if s.volume)}
    return frozenset(names)


def load(stack: StackConfig, target: PodmanVersion, *, strict_lossy: bool = True) -> Extras:
    """Every enabled project, converted; those that cannot join are named in `problems`
    (a collision with a core service or an earlier project, a file that does not load,
    lossy settings without allow_lossy when `strict_lossy`)."""
    projects: list[Converted] = []
    problems: dict[str, str] = {}
    files = {name: "the core stack" for name in core_files()}
    containers = {s.name: "the core stack" for s in SERVICES}
    for index, entry in enumerate(stack.extra):
        if not entry.enabled:
            continue
        where = _where(index, entry)
        try:
            done = convert_entry(index, entry, stack, target)
            if done.lossy and strict_lossy and not entry.allow_lossy:
                raise ExtraError(
                    [
                        f"{where}: cannot be converted without loss: "
                        f"{'; '.join(done.lossy)} (set allow_lossy: true to accept)"
                    ]
                )
            clashes = [f"unit file {n} (also {files[n]}'s)" for n in done.units if n in files]
            clashes += [f"container {m.container} (also {containers[m.container]}'s)"
                        for m in done.members if m.container in containers]  # fmt: skip
            if clashes:
                raise ExtraError([f"{where}: refused: {', '.join(clashes)}; name the project "
                                  "or the service differently"])  # fmt: skip
        except ExtraError as exc:
            problems[entry.project] = "; ".join(exc.problems)
            continue
        files.update({n: f"project {done.project}" for n in done.units})
        containers.update({m.container: f"project {done.project}" for m in done.members})
        projects.append(done)
    return Extras(tuple(projects), problems)


def target_of(stack: StackConfig) -> PodmanVersion:
    """The target Podman for the run-time catalogue: the pinned one, else the default
    (membership does not depend on it: names, dependencies, one-shots)."""
    if stack.podman_version != "auto":
        try:
            return PodmanVersion.parse(stack.podman_version)
        except ValueError:
            pass
    return DEFAULT_TARGET


# --- the run-time catalogue, cached by the files' stamps ------------------------------

Stamp = tuple[tuple[str, int, int, int], ...]
_lock = threading.Lock()
_cache: dict[str, tuple[object, Extras]] = {}


def _stamps(stack: StackConfig) -> Stamp:
    """(path, mtime, size, inode) of every compose file and each project's .env."""
    paths: list[Path] = []
    for entry in stack.extra:
        paths.extend(entry.files)
        if entry.files:
            paths.append(entry.files[0].parent / ".env")
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(path), -1, -1, -1))
    return tuple(out)


def current(stack: StackConfig) -> Extras:
    """stack.extra as it stands now (lossy settings do not take a project out: apply
    refuses those, and the watcher shows the units as not installed)."""
    if not stack.extra:
        return Extras()
    key = (stack.extra, enabled_names(stack), stack.podman_version, _stamps(stack))
    with _lock:
        hit = _cache.get("extras")
        if hit is not None and hit[0] == key:
            return hit[1]
    extras = load(stack, target_of(stack), strict_lossy=False)
    with _lock:
        _cache["extras"] = (key, extras)
    return extras


def members(stack: StackConfig) -> tuple[Member, ...]:
    """Every service of the managed stack: the core ones, then the extras, in start order."""
    return core_members(stack) + current(stack).members


def problems(stack: StackConfig) -> Mapping[str, str]:
    """Projects of stack.extra left out of the stack, and why (doctor names them)."""
    return current(stack).problems


def member_names(stack: StackConfig) -> tuple[str, ...]:
    return tuple(m.name for m in members(stack))
