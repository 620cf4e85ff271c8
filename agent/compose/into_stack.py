"""`aistack import-compose --into-stack`: a compose project's services join the managed stack.

The project is converted exactly as `aistack up` will convert it (agent/stack/extra.py,
with the other projects of stack.extra, so a name clash shows now); then its entry is
written into `stack.extra` of agent.yaml (an entry of the same project is replaced; the
lines outside `stack:` are kept, the file before is kept as `agent.yaml.pre-import`) and
the agent is asked to reload. Nothing is started: `aistack up` does that.

Refused, nothing written: a compose file under /home, /root or /run/user (the agent's
unit has ProtectHome=yes: it could not read it), a project that does not load (65, the
file and key named), lossy settings without --allow-lossy (2), a clash (65).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import client
from ..atomic import write_atomic
from ..config import ConfigError, ExtraConfig, load_config, parse_config, resolve_path
from ..config_text import with_extra
from ..quadlet import PodmanVersion
from ..stack import extra
from .errors import EX_DATAERR, ComposeError
from .loader import LoadOptions, load_project
from .report import Report

EX_OK = 0
EX_LOSSY = 2
EX_CANTCREAT = 73
SAVED_SUFFIX = ".pre-import"


class Refused(Exception):
    def __init__(self, code: int, problems: list[str]) -> None:
        self.code = code
        self.problems = problems
        super().__init__("; ".join(problems))


def _project_name(files: list[Path], profiles: list[str], name: str | None) -> str:
    """The project's name as compose derives it (`-p`, `name:`, the directory)."""
    if name:
        return name
    options = LoadOptions(files=files, environ={}, profiles=profiles,
                          external=frozenset(extra.core_names()))  # fmt: skip
    return load_project(options, Report()).name


def plan_entry(
    args: argparse.Namespace, files: list[Path], config_path: Path, target: PodmanVersion
) -> tuple[ExtraConfig, extra.Converted, str, str]:
    """The entry, its conversion, agent.yaml now and after; raises Refused."""
    files = [Path(os.path.abspath(f)) for f in files]
    name = _project_name(files, list(args.profiles), args.project_name)
    entry = ExtraConfig(project=name, files=tuple(files), profiles=tuple(args.profiles),
                        allow_lossy=bool(args.allow_lossy))  # fmt: skip
    if problems := extra.check_files(0, entry):
        raise Refused(EX_DATAERR, [p.replace("stack.extra[0].", "-f ") for p in problems])
    text = config_path.read_text() if config_path.exists() else ""
    config = load_config(config_path, must_exist=False)
    others = [e for e in config.stack.extra if e.project != name]
    at = next((i for i, e in enumerate(config.stack.extra) if e.project == name), len(others))
    stack = replace(config.stack, extra=(*others[:at], entry, *others[at:]))
    found = extra.load(stack, target, strict_lossy=False)
    if name in found.problems:
        raise Refused(EX_DATAERR, [found.problems[name]])
    done = next(p for p in found.projects if p.project == name)
    if done.lossy and not entry.allow_lossy:
        raise Refused(EX_LOSSY, [f"cannot be converted without loss: {item}" for item in
                                 done.lossy])  # fmt: skip
    new = with_extra(text, _entry_data(entry))
    try:
        parse_config(new, str(config_path))
    except ConfigError as exc:
        raise Refused(EX_DATAERR, [f"the new {config_path} would be invalid: {p}"
                                   for p in exc.problems]) from None  # fmt: skip
    return entry, done, text, new


def _entry_data(entry: ExtraConfig) -> dict[str, Any]:
    data: dict[str, Any] = {"project": entry.project, "files": [str(f) for f in entry.files]}
    if entry.profiles:
        data["profiles"] = list(entry.profiles)
    if entry.allow_lossy:
        data["allow_lossy"] = True
    return data


def _reload(config_path: Path) -> str:
    """Ask the running agent to read the new config; the line that says what happened."""
    try:
        config = load_config(config_path)
        answer = client.post(config, "/v1/reload", 60)
    except (client.AgentUnreachable, ConfigError) as exc:
        return f"the agent was not reloaded ({exc}): systemctl reload aistack-agent"
    if answer.status != 200:
        return f"the agent refused the new config: {answer.error_message()}"
    return "the agent reloaded its config"


def into_stack(args: argparse.Namespace, files: list[Path], target: PodmanVersion) -> int:
    """The command; `files` and `target` as import-compose found them (-f or compose's
    default names; --podman-version or this host's)."""
    if args.output is not None or args.stack_config is not None:
        print("aistack: import-compose: --into-stack writes agent.yaml; it takes neither -o "
              "nor --stack-config", file=sys.stderr)  # fmt: skip
        return EX_LOSSY
    config_path, _ = resolve_path(getattr(args, "config", None))
    try:
        entry, done, before, after = plan_entry(args, files, config_path, target)
    except ComposeError as exc:
        return _refused(args, EX_DATAERR, [exc.render()])
    except Refused as exc:
        return _refused(args, exc.code, exc.problems)
    saved = config_path.with_name(config_path.name + SAVED_SUFFIX)
    try:
        if before:
            write_atomic(saved, before.encode(), mode=0o600)
        mode = config_path.stat().st_mode & 0o777 if config_path.exists() else 0o644
        write_atomic(config_path, after.encode(), mode=mode)
    except OSError as exc:
        return _refused(args, EX_CANTCREAT, [f"{config_path}: cannot write: {exc.strerror}"])
    reloaded = _reload(config_path)
    services = [m.name for m in done.members]
    if args.json:
        print(json.dumps({
            "exit_code": EX_OK, "project": entry.project, "config": str(config_path),
            "saved": str(saved) if before else None, "services": services,
            "adopted": dict(done.adopted), "units": sorted(done.units),
            "lossy": list(done.lossy), "notes": list(done.notes), "reload": reloaded,
        }, indent=2))  # fmt: skip
    lines = [f"aistack: import-compose: project {entry.project!r} joins the stack: "
             f"{', '.join(services)}"]  # fmt: skip
    lines += [f"  {core} is the stack's own {name} (not converted)"
              for name, core in sorted(done.adopted.items())]  # fmt: skip
    lines += [f"  lossy (allowed): {item}" for item in done.lossy]
    lines += [f"  note: {item}" for item in done.notes]
    lines.append(f"wrote stack.extra to {config_path}" + (f" (before: {saved})" if before else ""))
    lines += [reloaded, "next: aistack up"]
    print("\n".join(lines), file=sys.stderr)
    return EX_OK


def _refused(args: argparse.Namespace, code: int, problems: list[str]) -> int:
    if args.json:
        print(json.dumps({"exit_code": code, "problems": problems}, indent=2))
    for problem in problems:
        print(f"aistack: import-compose: {problem}", file=sys.stderr)
    print("aistack: import-compose: nothing written", file=sys.stderr)
    return code
