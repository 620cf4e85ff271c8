"""`aistack import-compose`: convert a docker-compose project into quadlet units.

Exit codes: 0 converted (and written with -o); 2 something could not be converted and
--allow-lossy was not given (nothing is written), or a usage error; 65 (EX_DATAERR) a
compose file is malformed, or refused as hostile (a name that is not a file name, an
alias bomb, a file that is not a regular file...): the message names the file and the
key path; 73 (EX_CANTCREAT) the output (-o DIR, --stack-config FILE) cannot be written.
Before writing, every unit's file name is checked to be a plain name inside -o, whatever
the loader already checked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..quadlet import FIRST_QUADLET, PodmanVersion, UnitFile
from .convert import convert
from .errors import EX_DATAERR, ComposeError, visible
from .header import HEADER_LEAD
from .into_stack import into_stack
from .loader import LoadOptions, Project, load_project
from .report import Report
from .stackconfig import StackImport, stack_config

EX_OK = 0
EX_LOSSY = 2
EX_CANTCREAT = 73  # sysexits.h: an output file cannot be created
DEFAULT_TARGET = PodmanVersion(5, 0)

# What `docker compose` reads when no -f is given, in its order of preference.
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)

EXIT_CODES = """exit codes:
  0   converted (and written, with -o)
  2   some settings cannot be converted (listed; nothing written) unless --allow-lossy,
      or a usage error
  65  a compose file is malformed or refused as hostile (EX_DATAERR): the file and the
      key path are named
  73  the output (-o DIR, --stack-config FILE) cannot be written, or a unit file there
      was written by another project or a person (EX_CANTCREAT); nothing is written"""

DESCRIPTION = """\
Convert a docker-compose project into Podman quadlet units (.container, .network,
.volume) that systemd runs. Compose is read as `docker compose` reads it: several -f
files merged, extends, include, profiles, x- fields with anchors, variable
interpolation from the environment and .env (or --env-file). Only quadlet keys the
target Podman accepts are written. Everything that cannot be converted is listed
(service, key, why) and nothing is written unless --allow-lossy."""


@dataclass
class ImportResult:
    project: Project
    target: PodmanVersion
    target_source: str  # "option", "host" or "default"
    units: list[UnitFile]
    report: Report
    written: list[Path] = field(default_factory=list)
    stack: StackImport | None = None
    stack_written: Path | None = None


def _version(text: str) -> PodmanVersion:
    try:
        version = PodmanVersion.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if version < FIRST_QUADLET:
        raise argparse.ArgumentTypeError(f"quadlet needs Podman {FIRST_QUADLET} or later")
    return version


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `import-compose` to the aistack command line."""
    parser = subparsers.add_parser(
        "import-compose",
        help="convert a docker-compose project into quadlet units",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        type=Path,
        metavar="FILE",
        help="compose file; repeat to merge overlays in order (default: compose.yaml or "
        "docker-compose.yml and its override file in the current directory)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="write the units into DIR (default: print them)",
    )
    parser.add_argument(
        "--podman-version",
        type=_version,
        metavar="X.Y",
        help=f"target Podman release (default: the Podman on this host, else {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--profile",
        dest="profiles",
        action="append",
        default=[],
        metavar="P",
        help="enable a compose profile (repeatable; '*': all)",
    )
    parser.add_argument(
        "--env-file",
        dest="env_files",
        action="append",
        type=Path,
        metavar="F",
        help="interpolation variables instead of the project's .env (repeatable)",
    )
    parser.add_argument(
        "-p",
        "--project-name",
        metavar="NAME",
        help="project name (default: 'name:', $COMPOSE_PROJECT_NAME or the "
        "project directory's name)",
    )
    parser.add_argument(
        "--allow-lossy",
        action="store_true",
        help="write the units even when some settings cannot be converted",
    )
    parser.add_argument(
        "--stack-config",
        type=Path,
        metavar="FILE",
        help="also write aistack's stack: config (for /etc/aistack/agent.yaml) to FILE when "
        "the project is the seed's AI stack (Ollama, Open WebUI, LiteLLM, PostgreSQL, "
        "recognised by image); secrets are listed, never copied",
    )
    parser.add_argument(
        "--into-stack",
        action="store_true",
        help="make the project's services part of the managed stack: check that it converts "
        "as `aistack up` will, write its entry into stack.extra of the agent's config "
        "(agent.yaml; the file before kept as agent.yaml.pre-import) and reload the agent",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,  # else it would hide `aistack --config FILE`
        help="with --into-stack: the agent's config (default: $AISTACK_CONFIG, else "
        "/etc/aistack/agent.yaml)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(func=cmd_import_compose)


def host_podman_version() -> PodmanVersion | None:
    """The Podman installed here, if any (quadlet's keys depend on it)."""
    podman = shutil.which("podman")
    if podman is None:
        return None
    try:
        out = subprocess.run(
            [podman, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return PodmanVersion.from_podman_output(out.stdout)


def default_files(directory: Path, environ: Mapping[str, str]) -> list[Path]:
    """The files `docker compose` would read without -f ($COMPOSE_FILE, else by name)."""
    if environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        return [directory / f for f in environ["COMPOSE_FILE"].split(sep) if f]
    for name in DEFAULT_FILES:
        if os.path.isfile(directory / name):
            files = [directory / name]
            override = next((o for o in OVERRIDE_FILES if os.path.isfile(directory / o)), None)
            return files + ([directory / override] if override else [])
    raise ComposeError(
        directory,
        "-f",
        f"no compose file here (looked for {', '.join(DEFAULT_FILES)}); name one with -f",
    )


def import_compose(
    files: Sequence[Path],
    *,
    environ: Mapping[str, str],
    target: PodmanVersion | None = None,
    profiles: Sequence[str] = (),
    env_files: Sequence[Path] | None = None,
    project_name: str | None = None,
) -> ImportResult:
    """Load and convert; raises ComposeError for malformed input. Writes nothing."""
    source = "option"
    if target is None:
        detected = host_podman_version()
        target, source = (detected, "host") if detected else (DEFAULT_TARGET, "default")
    report = Report()
    options = LoadOptions(
        files=list(files),
        environ=environ,
        env_files=env_files,
        profiles=list(profiles),
        project_name=project_name,
    )
    project = load_project(options, report)
    units = convert(project, target, report)
    return ImportResult(project, target, source, units, report.sorted())


class OutputError(Exception):
    """An output cannot be written (exit 73): `target` and why."""

    def __init__(self, target: Path, option: str, message: str) -> None:
        self.target = target
        self.option = option
        self.message = message
        super().__init__(f"{option} {target}: {message}")

    def as_dict(self) -> dict[str, str]:
        return {"file": str(self.target), "path": self.option, "message": self.message}


# A unit file name: a plain name, never a path (defence in depth: the loader already
# refuses names outside Compose's rule, but the writer must not trust that).
_UNIT_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*\.(container|network|volume)")
_MAX_FILE_NAME = 240


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path("/")


def check_output_dir(directory: Path) -> None:
    """-o must be a directory, or creatable as one (checked before anything is written)."""
    found = _existing_ancestor(directory.absolute())
    if not os.path.isdir(found):
        what = (
            "exists and is not a directory"
            if found == directory.absolute()
            else (f"cannot be created: {found} is not a directory")
        )
        raise OutputError(directory, "-o", f"{what}; nothing written")


def check_output_file(path: Path, option: str) -> None:
    """A file to write must not be a directory, and its directory must be creatable."""
    if os.path.isdir(path):
        raise OutputError(path, option, "is a directory; nothing written")
    found = _existing_ancestor(path.parent.absolute())
    if not os.path.isdir(found):
        raise OutputError(path, option, f"cannot be created: {found} is not a directory")


def unit_path(directory: Path, name: str) -> Path:
    """Where a unit goes: a plain file name directly inside `directory`, else refused."""
    inside = Path(os.path.normpath(directory.absolute() / name))
    if (
        not _UNIT_FILE.fullmatch(name)
        or len(name.encode()) > _MAX_FILE_NAME
        or inside.parent != Path(os.path.normpath(directory.absolute()))
    ):
        raise OutputError(
            directory, "-o", f"refusing to write {name!r}: not a plain unit file name"
        )
    return directory / name


def write_units(units: Sequence[UnitFile], directory: Path) -> list[Path]:
    """Each unit written atomically (a crash never leaves half a unit for quadlet).

    Every path is checked before the first write, so a refused name writes nothing.
    """
    check_output_dir(directory)
    paths = [unit_path(directory, unit.name) for unit in units]
    for unit, path in zip(units, paths, strict=True):
        _check_not_anothers(unit, path, directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for unit, path in zip(units, paths, strict=True):
            write_atomic(path, unit.render().encode())
    except OSError as exc:
        raise OutputError(directory, "-o", f"cannot write: {exc.strerror or exc}") from None
    return paths


_ORIGIN = re.compile(r"# \(compose project ('(?:[^'\\]|\\.)*'|\"[^\"]*\"), ")
_HEAD_BYTES = 4096


def _check_not_anothers(unit: UnitFile, path: Path, directory: Path) -> None:
    """A file already at `path` is replaced only when this same import wrote it (the
    same compose files, the same project): never another project's unit of the same
    name, never a unit a person wrote."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES).decode(errors="replace").splitlines()[:2]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(directory, "-o", f"cannot read {path.name}: {exc.strerror}") from None
    ours = [f"# {line}" for line in unit.header[:2]]
    if head == ours:
        return
    lead = f"# {HEADER_LEAD}"
    if head and head[0].startswith(lead):
        found = _ORIGIN.match(head[1]) if len(head) > 1 else None
        other = found.group(1) if found else "another project"
        why = (f"{path.name} there was written from another compose project ({other}, "
               f"{head[0][len(lead):]}); name this one differently (-p NAME), or write it "
               "to another folder")  # fmt: skip
    else:
        why = f"{path.name} there was not written by aistack import-compose; not replacing it"
    raise OutputError(directory, "-o", f"refusing to overwrite: {why}; nothing written")


def write_stack_config(path: Path, text: str) -> None:
    """The stack: config, written atomically."""
    check_output_file(path, "--stack-config")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())
    except OSError as exc:
        raise OutputError(path, "--stack-config", f"cannot write: {exc.strerror or exc}") from None


def _as_json(result: ImportResult, exit_code: int) -> dict[str, Any]:
    return {
        "exit_code": exit_code,
        "project": result.project.name,
        "project_directory": str(result.project.directory),
        "files": [str(f) for f in result.project.files],
        "target_podman": str(result.target),
        "target_source": result.target_source,
        "services": sorted(result.project.services),
        "units": [{"name": u.name, "content": u.render()} for u in result.units],
        "written": [str(p) for p in result.written],
        **result.report.as_dict(),
        **({"stack_config": _stack_json(result)} if result.stack is not None else {}),
    }


def _stack_json(result: ImportResult) -> dict[str, Any]:
    stack = result.stack
    assert stack is not None
    return {
        "recognised": stack.recognised,
        "why_not": stack.why or None,
        "services": stack.services,
        "config": stack.data or None,
        "secrets_todo": stack.secrets_todo,
        "written": str(result.stack_written) if result.stack_written else None,
    }


def add_stack_config(result: ImportResult) -> StackImport:
    """Derive the stack: config (notes and to-dos join the import's report)."""
    report = Report(result.report.lossy, result.report.notes, result.report.actions)
    result.stack = stack_config(result.project, report)
    result.report = report.sorted()
    return result.stack


def _next_steps(result: ImportResult, written_to: Path | None) -> str:
    services = " ".join(
        f"{u.name.removesuffix('.container')}.service"
        for u in result.units
        if u.name.endswith(".container")
    )
    start = f"systemctl daemon-reload && systemctl start {services}"
    if written_to is None:
        return (
            "next: write the units to /etc/containers/systemd/ (root) or "
            f"~/.config/containers/systemd/ (-o DIR), then: {start}"
        )
    where = os.path.abspath(written_to)
    if where.startswith(("/etc/containers/systemd", "/usr/share/containers/systemd")) or (
        "/.config/containers/systemd" in where
    ):
        return f"next: {start}"
    return (
        f"next: copy the units from {written_to} to /etc/containers/systemd/ (root) or "
        f"~/.config/containers/systemd/, then: {start}"
    )


def cmd_import_compose(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.into_stack:
        try:
            files = args.files or default_files(Path.cwd(), environ)
        except ComposeError as exc:
            print(f"aistack: import-compose: {exc.render()}", file=sys.stderr)
            return EX_DATAERR
        return into_stack(args, files, args.podman_version or host_podman_version()
                          or DEFAULT_TARGET)  # fmt: skip
    try:
        files = args.files or default_files(Path.cwd(), environ)
        result = import_compose(
            files,
            environ=environ,
            target=args.podman_version,
            profiles=args.profiles,
            env_files=args.env_files,
            project_name=args.project_name,
        )
        blocked = bool(result.report.lossy) and not args.allow_lossy
        stack = add_stack_config(result) if args.stack_config is not None else None
        if not blocked:
            # both outputs checked before either is written
            if args.output is not None:
                check_output_dir(args.output)
            if stack is not None and stack.recognised:
                check_output_file(args.stack_config, "--stack-config")
            if args.output is not None:
                result.written = write_units(result.units, args.output)
            if stack is not None and stack.recognised:
                write_stack_config(args.stack_config, stack.render(result.project.files))
                result.stack_written = args.stack_config
    except ComposeError as exc:
        if args.json:
            print(json.dumps({"exit_code": EX_DATAERR, "error": exc.as_dict()}, indent=2))
        print(f"aistack: import-compose: {exc.render()}", file=sys.stderr)
        return EX_DATAERR
    except OutputError as exc:
        if args.json:
            print(json.dumps({"exit_code": EX_CANTCREAT, "error": exc.as_dict()}, indent=2))
        print(f"aistack: import-compose: {visible(str(exc))}", file=sys.stderr)
        return EX_CANTCREAT
    report = result.report
    exit_code = EX_LOSSY if blocked else EX_OK
    if args.json:
        print(json.dumps(_as_json(result, exit_code), indent=2))
    elif not blocked and args.output is None:
        for i, unit in enumerate(result.units):
            print(("\n" if i else "") + f"==> {unit.name} <==")
            print(unit.render(), end="")
    origin = {
        "option": "",
        "host": " (found on this host)",
        "default": " (default; no podman found here)",
    }[result.target_source]
    head = (
        f"aistack: import-compose: project {result.project.name!r}, "
        f"{len(result.project.services)} services, target Podman {result.target}{origin}"
    )
    lines = [head]
    if report.render():
        lines.append(report.render())
    if blocked:
        lines.append(
            f"aistack: {len(report.lossy)} setting(s) cannot be converted; nothing "
            "was written. Change the compose file, or accept the loss with "
            "--allow-lossy."
        )
    elif result.written:
        lines.append(f"wrote {len(result.written)} files to {args.output}")
        lines.append(_next_steps(result, args.output))
    else:
        lines.append(_next_steps(result, None))
    if stack is not None and not stack.recognised:
        lines.append(
            f"aistack: --stack-config: nothing written to {args.stack_config}: the project "
            f"is not the seed's AI stack: {stack.why}"
        )
    elif result.stack_written is not None:
        lines.append(
            f"wrote the stack: config to {result.stack_written}: merge it into "
            "/etc/aistack/agent.yaml, do the stack config's to-dos, then: aistack up"
        )
    print("\n".join(lines), file=sys.stderr)
    return exit_code
