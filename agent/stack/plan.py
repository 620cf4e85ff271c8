"""What an apply will do, decided without touching anything: the `Plan`.

`plan()` is pure: it takes what the config renders to (`planned` files), what is
installed (file contents read by `read_installed`), the units' active states and the
services whose secrets changed, and returns every write, removal, stop and (re)start in
order. `apply.py` only carries a Plan out through the gateways, and `aistack render
--diff` shows the same file changes, so what the diff shows is what an apply writes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..compose.header import HEADER_LEAD
from .model import SERVICES, VOLUMES, unit_of
from .render import LITELLM_CONFIG, Rendered

# The first line of a unit the compose importer wrote: an extra service's (stack.extra).
EXTRA_MARK = f"# {HEADER_LEAD}"

ACTIVE_STATES = ("active", "activating", "reloading")


@dataclass(frozen=True)
class Start:
    service: str
    action: Literal["start", "restart"]
    why: str  # not running | unit changed | config changed | secret changed


@dataclass(frozen=True)
class Plan:
    """In execution order: stop dropped services (and purge their volumes), write and
    remove files, daemon-reload, then start or restart in dependency order."""

    stop: tuple[str, ...] = ()
    purge_volumes: tuple[str, ...] = ()
    write: Mapping[Path, str] = field(default_factory=dict)
    remove: tuple[Path, ...] = ()
    daemon_reload: bool = False
    start: tuple[Start, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def changes_nothing(self) -> bool:
        return not (self.stop or self.write or self.remove or self.start)


def planned(rendered: Rendered, unit_dir: Path) -> dict[Path, str]:
    """Every file an apply would own, with its content."""
    files = {unit_dir / name: text for name, text in rendered.files.items()}
    if rendered.litellm_config is not None:
        files[LITELLM_CONFIG] = rendered.litellm_config
    return files


def read_installed(files: Collection[Path], unit_dir: Path) -> dict[Path, str]:
    """The host's side (reads only): the planned paths that exist, and every file in the
    unit folder (the agent owns it: a file there that is not planned is removed)."""
    existing = [p for p in unit_dir.glob("*") if p.is_file()] if unit_dir.is_dir() else []
    out: dict[Path, str] = {}
    for path in sorted({*files, *existing}):
        if path.is_file():
            out[path] = path.read_text()
    return out


def diff(files: Mapping[Path, str], installed: Mapping[Path, str]) -> dict[Path, tuple[str, str]]:
    """path -> (installed, planned) for what differs; "" stands for no file."""
    out: dict[Path, tuple[str, str]] = {}
    for path in sorted({*files, *installed}):
        old, new = installed.get(path, ""), files.get(path, "")
        if old != new:
            out[path] = (old, new)
    return out


def changes(files: dict[Path, str], unit_dir: Path) -> dict[Path, tuple[str, str]]:
    """`aistack render --diff`: the file changes an apply would make on this host."""
    return diff(files, read_installed(files, unit_dir))


def plan(
    rendered: Rendered,
    unit_dir: Path,
    installed: Mapping[Path, str],
    active_states: Mapping[str, str],
    secret_changed: Collection[str] = (),
    purge_data: bool = False,
) -> Plan:
    """The apply of `rendered` over `installed` (file contents) and the units' states
    (unit -> ActiveState). Pure: the same inputs give the same Plan."""
    files = planned(rendered, unit_dir)
    changed = diff(files, installed)
    containers = {p: t for p, t in installed.items()
                  if p.parent == unit_dir and p.suffix == ".container"}  # fmt: skip
    on_host = {p.stem for p in containers}
    # Extra services dropped from stack.extra (their unit says the importer wrote it)
    # stop first: they may need a core service. A stray file is only removed.
    dropped_extras = sorted(
        (p.stem for p, text in containers.items()
         if text.startswith(EXTRA_MARK) and p.stem not in rendered.services),
        reverse=True,
    )  # fmt: skip
    dropped = (*dropped_extras, *(
        s.name for s in reversed(SERVICES) if s.name in on_host - set(rendered.services)
    ))  # fmt: skip
    purge = tuple(
        f"aistack-{Path(VOLUMES[name]).stem}" for name in dropped if purge_data and name in VOLUMES
    )
    units_changed = {p.stem for p in changed if p.parent == unit_dir and p.suffix == ".container"}
    starts: list[Start] = []
    unchanged: list[str] = []
    for name in rendered.services:
        active = active_states.get(unit_of(name), "inactive") in ACTIVE_STATES
        why = (
            "unit changed" if name in units_changed
            else "config changed" if name == "litellm" and LITELLM_CONFIG in changed
            else "secret changed" if name in secret_changed
            else None
        )  # fmt: skip
        if active and why is None:
            unchanged.append(name)
        elif active:
            starts.append(Start(name, "restart", why or ""))
        else:
            starts.append(Start(name, "start", "not running"))
    return Plan(
        stop=dropped,
        purge_volumes=purge,
        write={p: new for p, (_, new) in changed.items() if new},
        remove=tuple(p for p, (_, new) in changed.items() if not new),
        daemon_reload=any(p.parent == unit_dir for p in changed),
        start=tuple(starts),
        unchanged=tuple(unchanged),
    )
