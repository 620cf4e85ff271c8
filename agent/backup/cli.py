"""`aistack backup now|list|verify|prune|restore`.

`now` asks the running agent (POST /v1/backups), so the agent's one-run-at-a-time rule,
status and metrics see the run; `--local` runs it in this process instead (no agent
needed). The others work on the backup folder directly, under its lock, and need no
agent: a host whose agent is down can still be restored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from .. import client
from ..config import AgentConfig, load_config, resolve_path
from ..tabular import table
from .model import BackupError, BusyError, RunResult, iso

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_UNREACHABLE = 3
EX_BUSY = 75  # EX_TEMPFAIL: the folder is locked by a run, prune or restore

EXIT_CODES = """exit codes:
  0   success
  1   the backup, verification or restore failed (the report says why)
  2   usage error (e.g. restore without --yes and without a terminal to confirm on)
  3   backup now: the agent is not answering (use --local to run without it)
  75  the backup folder is busy (another run, prune or restore holds its lock)
  78  the config file is invalid"""


def _config(args: argparse.Namespace) -> AgentConfig:
    from ..log import setup_logging

    path, explicit = resolve_path(args.config)
    config = load_config(path, must_exist=explicit)
    # The commands print their own report on stdout; the log (stderr) adds only warnings.
    setup_logging("warning", config.logging.format)
    return config


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _human(size: int | None) -> str:
    from .disk import human

    return "-" if size is None else human(size)


def _local_time(ts: float, zone_name: str) -> str:
    from .runner import resolve_zone

    return datetime.fromtimestamp(ts, resolve_zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S")


def render_result(result: dict[str, Any]) -> str:
    if result["result"] == "success":
        lines = [
            f"backup {result['id']}: verified and stored ({_human(result['size_bytes'])}, "
            f"{result['duration_seconds']:.1f}s, sha256 {str(result['sha256'])[:16]}...)"
        ]
        if result.get("pruned"):
            lines.append(f"pruned: {', '.join(result['pruned'])}")
        lines.append(f"retained: {result.get('retained')}")
    else:
        what = "refused" if result["result"] == "refused" else "FAILED"
        lines = [f"backup {what} at stage {result['stage']}: {result['error']}"]
        if result.get("stderr"):
            lines += ["", "stderr:", *("  " + ln for ln in str(result["stderr"]).splitlines())]
        lines.append("nothing was stored; older backups are untouched")
    lines += [f"warning: {w}" for w in result.get("warnings") or ()]
    trial = result.get("trial_restore")
    if isinstance(trial, dict):
        ok = trial.get("ok")
        lines.append("trial restore: ok" if ok else f"trial restore FAILED: {trial.get('error')}")
    return "\n".join(lines)


# --- now ---------------------------------------------------------------------------------


def cmd_now(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.local:
        from .runner import BackupRunner

        runner = BackupRunner(config.backups, config.watch.podman_socket)
        result: RunResult = asyncio.run(runner.run("cli"))
        data = result.to_dict()
        _print_json(data) if args.json else print(render_result(data))
        return EX_OK if result.ok else EX_FAILED
    base = args.url or client.api_base(config)
    try:
        token = client.read_token(config)
    except client.AgentUnreachable as exc:
        print(f"aistack: {exc} (or use --local)", file=sys.stderr)
        return EX_FAILED
    wait = "false" if args.no_wait else "true"
    timeout = args.timeout or config.backups.timeout + 60
    try:
        answer = client.request(f"{base}/v1/backups?wait={wait}", timeout, "POST", token)
    except client.AgentUnreachable as exc:
        print(f"aistack: {exc}.\nRun the backup in this process instead: aistack backup now "
              "--local", file=sys.stderr)  # fmt: skip
        return EX_UNREACHABLE
    if answer.status >= 400 or not isinstance(answer.body, dict):
        message = answer.error_message()
        print(f"aistack: the agent refused: {message}", file=sys.stderr)
        busy = answer.status == 409 and "already running" in message
        return EX_BUSY if busy else EX_FAILED
    body = answer.body
    if args.no_wait:
        _print_json(body) if args.json else print("backup started; see: aistack status")
        return EX_OK
    _print_json(body) if args.json else print(render_result(body))
    return EX_OK if body.get("result") == "success" else EX_FAILED


# --- list --------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from .runner import retention_plan
    from .store import BackupStore

    config = _config(args)
    cfg = config.backups
    store = BackupStore(cfg.directory)
    manifests, problems = store.scan()
    import time

    plan = retention_plan(cfg, manifests, time.time())
    if args.json:
        _print_json(
            {
                "directory": str(cfg.directory),
                "backups": [
                    {**m.to_dict(), "keep": list(plan.keep.get(m.id, ()))}
                    for m in reversed(manifests)
                ],
                "problems": problems,
            }
        )
        return EX_OK
    if not manifests:
        print(f"no backups in {cfg.directory}")
    else:
        rows = [["ID", f"STARTED ({cfg.timezone})", "SIZE", "TOOK", "VERIFIED", "KEPT BY"]]
        for m in reversed(manifests):
            reasons = plan.keep.get(m.id)
            rows.append(
                [
                    m.id,
                    _local_time(m.started_at, cfg.timezone),
                    _human(m.size),
                    f"{m.finished_at - m.started_at:.1f}s",
                    "yes" if m.verified else "NO",
                    ", ".join(reasons) if reasons else "(would be pruned)",
                ]
            )
        print(table(rows))
    for problem in problems:
        print(f"! {problem}")
    return EX_OK


# --- verify ------------------------------------------------------------------------------


async def _verify_one(source: Any, store: Any, manifest: Any) -> tuple[bool, str]:
    import dataclasses
    import time

    from .store import DUMP_FILE
    from .verify import check_globals, check_sha256, full_read

    folder = store.path(manifest.id)
    try:
        await check_sha256(folder / DUMP_FILE, manifest.dump.size, manifest.dump.sha256)
        if manifest.globals is not None:
            g = manifest.globals
            await check_sha256(folder / g.name, g.size, g.sha256)
            check_globals(folder / g.name)
        header = await full_read(source, folder / DUMP_FILE)
    except BackupError as exc:
        if manifest.verified:  # retention stops counting it; status shows it
            note = f"verification failed at {iso(time.time())}: {exc.message}"
            updated = dataclasses.replace(
                manifest.with_verification(False, time.time()),
                warnings=(*manifest.warnings, note),
            )
            store.write_manifest(folder, updated)
        return False, exc.message
    return True, (
        f"sha256 ok, full read ok ({_human(manifest.size)}, {header.compression}, "
        f"PostgreSQL {header.server_version})"
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from .sources import make_source
    from .store import BackupStore

    config = _config(args)
    cfg = config.backups
    store = BackupStore(cfg.directory)
    if not args.all and not args.ids:
        print("aistack: name backups to verify, or --all", file=sys.stderr)
        return EX_USAGE
    source = make_source(cfg, config.watch.podman_socket)
    results = []
    with store.lock("verify"):
        targets = store.list() if args.all else [store.get(i) for i in args.ids]
        for manifest in targets:
            ok, message = asyncio.run(_verify_one(source, store, manifest))
            results.append({"id": manifest.id, "ok": ok, "message": message})
            if not args.json:
                print(f"{manifest.id}: {'ok' if ok else 'FAILED'}: {message}")
    if args.json:
        _print_json(results)
    if not results and not args.json:
        print(f"no backups in {cfg.directory}")
    return EX_OK if all(r["ok"] for r in results) else EX_FAILED


# --- prune -------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    import time

    from .runner import retention_plan
    from .store import BackupStore

    config = _config(args)
    cfg = config.backups
    store = BackupStore(cfg.directory)
    with store.lock("prune"):
        manifests = store.list()
        plan = retention_plan(cfg, manifests, time.time())
        deleted = []
        if not args.dry_run:
            for backup_id in plan.delete:
                store.delete(backup_id)
                deleted.append(backup_id)
    if args.json:
        _print_json(
            {
                "dry_run": args.dry_run,
                "keep": {k: list(v) for k, v in plan.keep.items()},
                "delete": list(plan.delete),
            }
        )
        return EX_OK
    verb = "would delete" if args.dry_run else "deleted"
    for m in reversed(manifests):
        if m.id in plan.keep:
            print(f"keep    {m.id}  {', '.join(plan.keep[m.id])}")
        else:
            print(f"{'delete' if args.dry_run else 'deleted'}  {m.id}")
    print(f"{len(plan.keep)} kept, {len(plan.delete)} {verb}")
    return EX_OK


# --- restore -----------------------------------------------------------------------------


def cmd_restore(args: argparse.Namespace) -> int:
    from .restore import SystemdUnits, restore_backup
    from .sources import make_source
    from .store import BackupStore

    config = _config(args)
    cfg = config.backups
    store = BackupStore(cfg.directory)
    target = args.to_db or cfg.database
    manifest = store.get(args.id)
    in_place = target == cfg.database
    what = f"restore backup {manifest.id} ({iso(manifest.started_at)}) into database {target!r}" + (
        f", the live database: {', '.join(cfg.dependent_units)} will be stopped and started"
        if in_place and cfg.dependent_units
        else ""
    )
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"aistack: this would {what}; pass --yes to confirm", file=sys.stderr)
            return EX_USAGE
        answer = input(f"This will {what}.\nObjects in {target!r} are replaced. "
                       f"Type the database name to continue: ")  # fmt: skip
        if answer.strip() != target:
            print("aborted", file=sys.stderr)
            return EX_FAILED
    units = SystemdUnits() if in_place and cfg.dependent_units else None
    source = make_source(cfg, config.watch.podman_socket)
    work = restore_backup(
        cfg, source, store, manifest.id, to_db=args.to_db, with_globals=not args.no_globals,
        units=units,
    )  # fmt: skip
    report = asyncio.run(work)
    data = report.to_dict()
    if args.json:
        _print_json(data)
    elif report.ok:
        print(f"restored {report.backup_id} into {report.database} in {report.seconds:.1f}s")
    else:
        print(f"restore FAILED at stage {report.stage}: {report.error}")
        if report.detail:
            print("stderr:\n" + "\n".join("  " + ln for ln in report.detail.splitlines()))
    if not args.json:
        if report.created_database:
            print(f"created database {report.database}")
        if report.stopped:
            print(f"stopped: {', '.join(report.stopped)}; started again: "
                  f"{', '.join(report.started) or 'none'}")  # fmt: skip
        for problem in report.globals_problems:
            print(f"roles: {problem}")
        for problem in report.restart_errors:
            print(f"! could not start again: {problem}")
    return EX_OK if report.ok and not report.restart_errors else EX_FAILED


# --- wiring ------------------------------------------------------------------------------


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except BusyError as exc:
            print(f"aistack: {exc.message}", file=sys.stderr)
            return EX_BUSY
        except BackupError as exc:
            print(f"aistack: {exc.message}", file=sys.stderr)
            return EX_FAILED

    return run


def register(subparsers: Any) -> None:
    """Add `backup` and its commands to the `aistack` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    backup = subparsers.add_parser(
        "backup", help="PostgreSQL backups: now, list, verify, prune, restore",
        description="Take, inspect, verify, prune and restore the PostgreSQL backups "
        "(docs/backups.md). Only `now` needs the running agent (or --local).",
        epilog=EXIT_CODES, formatter_class=fmt,
    )  # fmt: skip
    sub = backup.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    now = sub.add_parser(
        "now", help="take a backup now",
        description="Ask the agent to take a backup now (POST /v1/backups) and wait for its "
        "result; --local runs it in this process.", epilog=EXIT_CODES, formatter_class=fmt,
    )  # fmt: skip
    now.add_argument("--local", action="store_true", help="run here, without the agent")
    now.add_argument("--no-wait", action="store_true", help="return once the run has started")
    now.add_argument("--url", help="agent base URL (default: from the config's api section)")
    now.add_argument("--timeout", type=float, help="seconds to wait (default backups.timeout)")
    now.add_argument("--json", action="store_true", help="print the result as JSON")
    now.set_defaults(func=_guard(cmd_now))

    lst = sub.add_parser("list", help="list backups, newest first, and why each is kept",
                         description="List the backups in backups.directory.")  # fmt: skip
    lst.add_argument("--json", action="store_true", help="print manifests as JSON")
    lst.set_defaults(func=_guard(cmd_list))

    verify = sub.add_parser(
        "verify", help="check checksums and read backups in full",
        description="Check each backup's sha256 and read its whole archive with "
        "`pg_restore -f /dev/null` (not --list, which passes truncated archives). A backup "
        "that fails is marked unverified in its manifest.", epilog=EXIT_CODES,
        formatter_class=fmt,
    )  # fmt: skip
    verify.add_argument("ids", nargs="*", metavar="ID", help="backup ids (or latest)")
    verify.add_argument("--all", action="store_true", help="verify every backup")
    verify.add_argument("--json", action="store_true", help="print results as JSON")
    verify.set_defaults(func=_guard(cmd_verify))

    prune = sub.add_parser(
        "prune", help="apply the retention rules now",
        description="Delete the backups no retention rule keeps (the agent does this after "
        "each successful run).", epilog=EXIT_CODES, formatter_class=fmt,
    )  # fmt: skip
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    prune.add_argument("--json", action="store_true", help="print the plan as JSON")
    prune.set_defaults(func=_guard(cmd_prune))

    restore = sub.add_parser(
        "restore", help="restore a backup into the live or another database",
        description="Check the backup's sha256, stop the dependents (backups.dependents) "
        "when restoring over the live database, apply the roles, restore with "
        "`pg_restore --clean --if-exists --single-transaction --exit-on-error`, start the "
        "dependents again, and report.", epilog=EXIT_CODES, formatter_class=fmt,
    )  # fmt: skip
    restore.add_argument("id", metavar="ID", help="backup id (or latest)")
    restore.add_argument("--to-db", metavar="NAME", help="restore into this database instead")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--no-globals", action="store_true", help="skip the roles file")
    restore.add_argument("--json", action="store_true", help="print the report as JSON")
    restore.set_defaults(func=_guard(cmd_restore))
