"""`aistack migrate COMPOSE_DIR`: the command line of run.py.

Exit codes: 0 migrated (or --dry-run: the plan, nothing changed; or --rollback done);
65 refused by the checks (each refusal printed; nothing changed) or a compose file is
malformed; 70 a step failed (rolled back; the report says what failed); 2 usage, or
confirmation needed (--yes) where nobody can answer; 3 the agent is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import client
from ..compose.cli import default_files, import_compose
from ..compose.errors import EX_DATAERR, ComposeError
from ..compose.stackconfig import stack_config
from ..config import AgentConfig, load_config, resolve_path
from ..log import setup_logging
from . import state as journal
from .run import MigrateError, Migration, Options, Refused, config_diff, desired_config
from .source import SourceError, from_project

EX_FAILED = 70
EX_USAGE = 2
EX_UNREACHABLE = 3

DESCRIPTION = """\
Take over a running docker-compose/podman-compose AI stack (Ollama, Open WebUI, LiteLLM,
PostgreSQL) with all its data: write the stack: config, carry the secrets the data
depends on (POSTGRES_PASSWORD, WEBUI_SECRET_KEY, LITELLM_MASTER_KEY, provider keys) into
/etc/aistack/secrets, take a verified safety backup of PostgreSQL, record what the data
holds, stop the old stack (its containers are kept, renamed *-pre-aistack), copy the data
into the managed volumes (or bind the folders in place), `aistack up`, and verify the
data against the record. Any failure rolls back to the old stack. Interrupted (kill,
power loss)? Run the same command again: it continues from the last step done."""

EPILOG = """examples:
  aistack migrate ~/containers/open-webui-stack --dry-run   # the plan; nothing changes
  aistack migrate ~/containers/open-webui-stack             # asks before it starts
  aistack migrate DIR --data in-place --yes                 # no copy; scripts
  aistack migrate DIR --rollback                            # back to the old stack

exit codes:
  0   migrated (--dry-run: planned; --rollback: rolled back)
  2   usage error, or a confirmation is needed and stdin is not a terminal (--yes)
  3   the agent is not running or not answering (systemctl start aistack-agent)
  65  refused by the checks, nothing changed (each refusal names the fix), or a
      compose file is malformed
  70  a step failed; the old stack was restored (the report says what failed)"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="take over a running compose stack with all its data",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", type=Path, metavar="COMPOSE_DIR", help="the compose project")
    p.add_argument("-f", "--file", dest="files", action="append", type=Path, metavar="FILE",
                   help="compose file(s), merged in order (default: as docker compose finds "
                   "them in COMPOSE_DIR)")  # fmt: skip
    p.add_argument("-p", "--project-name", metavar="NAME", help="compose project name")
    p.add_argument("--data", choices=("copy", "in-place"), default="copy",
                   help="copy (default): into the managed volumes, the old folders left as "
                   "they are; in-place: the managed units bind the old folders")  # fmt: skip
    p.add_argument("--old-stopped", action="store_true",
                   help="the old stack is already stopped (docker compose down): check that "
                   "nothing holds the data, take no backup through it")  # fmt: skip
    p.add_argument("--pg-upgrade", action="store_true",
                   help="the data's PostgreSQL major differs from the image's: move it by "
                   "dump and restore")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask before starting")
    p.add_argument("--rollback", action="store_true",
                   help="undo a migration: managed units out, agent.yaml back, the old "
                   "containers back and started")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=journal.DEFAULT_DIR,
        help=f"where the journal and the safety backup go ({journal.DEFAULT_DIR})",
    )
    p.set_defaults(func=cmd_migrate)


class _ApiAgent:
    """The running agent through its API (the token: state changes need it)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def reload(self) -> None:
        answer = client.post(self.config, "/v1/reload", 60)
        if answer.status != 200:
            raise MigrateError(f"the agent refused the new config: {answer.error_message()}"
                               + _problems(answer.body))  # fmt: skip

    def apply(self) -> dict[str, Any]:
        answer = client.post(self.config, "/v1/apply", 1800)
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status not in (200, 500, 503) or "error" in body:
            raise MigrateError(f"aistack up: {answer.error_message()}" + _problems(body))
        return body


def _problems(body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        found = body["error"].get("problems") or []
        return (": " + "; ".join(map(str, found))) if found else ""
    return ""


def say(text: str) -> None:
    """Progress and the plan go to stderr; stdout is for the report (or --json)."""
    print(text, file=sys.stderr, flush=True)


def _err(text: str) -> None:
    print(f"aistack migrate: {text}", file=sys.stderr, flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    config_path, explicit = resolve_path(args.config)
    config = load_config(config_path, must_exist=explicit)
    # The report goes to stdout (--json there too); the log adds only warnings, on stderr.
    setup_logging("warning", config.logging.format, sys.stderr)
    options = Options(
        mode=args.data, old_stopped=args.old_stopped, pg_upgrade=args.pg_upgrade,
        config_path=config_path, socket=config.watch.podman_socket,
    )  # fmt: skip
    try:
        files = args.files or default_files(args.directory, os.environ)
        imported = import_compose(files, environ=dict(os.environ),
                                  project_name=args.project_name)  # fmt: skip
        stack = stack_config(imported.project, imported.report)
        old = from_project(imported.project, stack, options.socket)
    except ComposeError as exc:
        _err(str(exc))
        return EX_DATAERR
    except SourceError as exc:
        _err(str(exc))
        return EX_DATAERR
    state_path = args.state_dir / "state.json"
    try:
        state = journal.State.load(state_path)
    except journal.StateError as exc:
        _err(str(exc))
        return EX_DATAERR
    agent = _ApiAgent(config)
    if state is not None and (args.rollback or state.phase == "running"):
        # a migration under way, or the one to undo: its own choices, not this command's
        options.mode = "in-place" if state.mode == "in-place" else "copy"
        options.old_stopped = state.old_stopped
    if args.rollback:
        if state is None or state.phase in ("rolled-back",):
            _err(f"nothing to roll back ({state_path}: {state.phase if state else 'none'})")
            return 0
        migration = Migration(old, options, state, agent, say)
        asyncio.run(migration.rollback(keep_volumes=True))
        volumes = [d.volume for d in old.data.values()] if state.mode == "copy" else []
        say(
            "rolled back: the old stack runs again"
            + (
                f"; the managed volumes are kept ({', '.join(volumes)}): remove them "
                "before migrating again"
                if volumes
                else ""
            )
        )
        return 0
    if state is not None and state.phase == "done":
        say(f"already migrated ({state_path}); nothing to do")
        return 0
    if state is not None and state.phase == "running" and state.done:
        if state.mode != args.data:
            _err(f"an unfinished migration with --data {state.mode} is in {state_path}: "
                 f"continue it with --data {state.mode}, or undo it with --rollback")  # fmt: skip
            return EX_USAGE
        say(f"continuing the migration in {state_path} after {list(state.done)[-1]}")
        return _go(Migration(old, options, state, agent, say), args)
    state = journal.State(state_path, [str(f) for f in old.files], old.project, options.mode)
    migration = Migration(old, options, state, agent, say)
    try:
        client.get(config, "/healthz", 10)
    except client.AgentUnreachable as exc:
        _err(f"{exc}; the migration ends with `aistack up`, through the agent: "
             "systemctl start aistack-agent")  # fmt: skip
        return EX_UNREACHABLE
    found = migration.findings()
    current = _read(config_path)
    wanted = desired_config(old, options, current)
    if args.json and (found.refusals or args.dry_run):
        print(
            json.dumps(
                {
                    "ok": not found.refusals,
                    "refusals": found.refusals,
                    "warnings": found.warnings,
                    "facts": found.facts,
                    "plan": migration.plan_text(found),
                    "secrets": old.secret_names(),
                    "config_diff": config_diff(current, wanted, config_path),
                },
                indent=2,
            )
        )
    for warning in found.warnings:
        say(f"warning: {warning}")
    if found.refusals:
        for refusal in found.refusals:
            _err(f"refused: {refusal}")
        _err("nothing was changed")
        return EX_DATAERR
    if not args.json:
        for line in migration.plan_text(found):
            say(line)
        say(config_diff(current, wanted, config_path) or f"({config_path} unchanged)")
    if args.dry_run:
        say("dry run: nothing was changed")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            _err("it stops the old stack: confirm with --yes (stdin is not a terminal)")
            return EX_USAGE
        if input("start the migration? [y/N] ").strip().lower() not in ("y", "yes"):
            say("nothing was changed")
            return 0
    state.pg_upgrade = bool(found.facts.get("pg_upgrade"))
    state.old_stopped = options.old_stopped
    state.finish("check")
    return _go(migration, args)


def _go(migration: Migration, args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(migration.run())
    except MigrateError as exc:
        _err(str(exc))
        if isinstance(exc, Refused):
            return EX_DATAERR
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc),
                              "phase": migration.state.phase}, indent=2))  # fmt: skip
        return EX_FAILED
    doc = {"ok": True, "steps": report.steps, "moved": report.moved, "verified": report.verified,
           "notes": report.notes, "backup": migration.state.backup}  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print("migrated:")
    for moved in report.moved:
        print(f"  {moved['service']:10} {moved['from']} -> {moved.get('volume', moved['to'])} "
              f"({moved['bytes']} bytes)")  # fmt: skip
    if migration.state.backup:
        b = migration.state.backup
        print(f"  safety backup {b['id']} ({b['size_bytes']} bytes) in {b['directory']}")
    for line in report.verified:
        print(f"  verified: {line}")
    for line in report.notes:
        print(f"  note: {line}")
    print("  took: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.steps.items()))
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
