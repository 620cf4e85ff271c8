"""The stack's commands: `render` (touches nothing), `up`, `down`, `restart`, `logs`,
`models`, `psql`, `secrets rotate`.

`up`, `down`, `restart` and `secrets rotate` ask the running agent (its API, with the token
from api.token_file), which owns the units; `render`, `logs`, `models` (Ollama's own API)
and `psql` work without it.

Exit codes: 0 done (render --diff: nothing would change), 1 render --diff: files would
change; up/down/restart: a service did not come up or stop, 3 the agent is not answering,
64 down/restart/logs: no such service (the stack's are listed), 65 the config cannot be
applied (each problem named; nothing changed), 78 invalid config.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from typing import Any

from .. import client
from ..client import AgentUnreachable
from ..config import AgentConfig, load_config, resolve_path
from . import extra, models
from .facts import host_facts
from .model import ORDER
from .plan import changes, planned
from .render import ExtraUnits, RenderError, render

EX_CHANGES = 1
EX_FAILED = 1
EX_UNREACHABLE = 3
EX_DATAERR = 65
EX_USAGE = 64  # an unknown service name (sysexits.h)


def _load(args: argparse.Namespace) -> AgentConfig:
    path, explicit = resolve_path(args.config)
    return load_config(path, must_exist=explicit)


def cmd_render(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        facts = host_facts(config)
        extras = extra.load(config.stack, facts.podman)  # the compose files, as up reads them
        if extras.problems:
            raise RenderError(list(extras.problems.values()))
        rendered = render(config.stack, facts, extras=ExtraUnits(extras.files, extras.services))
    except RenderError as exc:
        for problem in exc.problems:
            print(f"aistack render: {problem}", file=sys.stderr)
        return EX_DATAERR
    unit_dir = config.stack.unit_dir
    files = planned(rendered, unit_dir)
    diff = changes(files, unit_dir)
    for warning in rendered.warnings:
        print(f"aistack render: warning: {warning}", file=sys.stderr)
    if args.json:
        doc = {
            "podman": str(facts.podman),
            "systemd": facts.systemd,
            "gpu": facts.gpu,
            "services": list(rendered.services),
            "files": {str(p): t for p, t in files.items()},
            "changed": [str(p) for p in diff],
            "warnings": list(rendered.warnings),
        }
        print(json.dumps(doc, indent=2))
    elif args.diff:
        for path, (old, new) in diff.items():
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True), new.splitlines(keepends=True),
                    f"{path} (installed)", f"{path} (rendered)",
                )
            )  # fmt: skip
        if not diff:
            print(f"# nothing would change in {unit_dir}", file=sys.stderr)
    else:
        for path, text in files.items():
            print(f"==> {path} <==")
            print(text)
    return EX_CHANGES if args.diff and diff else 0


def _call(config: AgentConfig, path: str, timeout: float) -> tuple[int, Any]:
    """POST to the agent with its token; (status, JSON body) for any HTTP status."""
    answer = client.post(config, path, timeout)
    if isinstance(answer.body, dict):
        return answer.status, answer.body
    return answer.status, {"error": {"message": answer.error_message()}}


def _report(doc: dict[str, Any]) -> None:
    for key in ("written", "removed", "stopped", "started", "restarted", "unchanged"):
        if doc.get(key):
            print(f"{key:10} {', '.join(map(str, doc[key]))}")
    for name, why in (doc.get("failed") or {}).items():
        print(f"FAILED     {name}: {why}")
    for warning in doc.get("warnings") or ():
        print(f"warning    {warning}")
    if "seconds" in doc:
        print(f"{'ok' if doc.get('ok') else 'NOT OK'} in {doc['seconds']:.1f} s")


def cmd_up(args: argparse.Namespace) -> int:
    config = _load(args)
    print(
        "applying the stack (render, write, start in order, wait until healthy) ...",
        file=sys.stderr,
        flush=True,
    )
    query = "?purge_data=true" if args.purge_data else ""
    try:
        status, doc = _call(config, f"/v1/apply{query}", args.timeout)
    except AgentUnreachable as exc:
        print(f"aistack up: {exc}\nIs it running? systemctl status aistack-agent", file=sys.stderr)
        return EX_UNREACHABLE
    if args.json:
        print(json.dumps(doc, indent=2))
    elif status == 422:
        for problem in doc["error"].get("problems", []):
            print(f"aistack up: {problem}", file=sys.stderr)
    elif "error" in doc:
        print(f"aistack up: {doc['error']['message']}", file=sys.stderr)
    else:
        _report(doc)
    return {200: 0, 422: EX_DATAERR}.get(status, EX_FAILED)


def cmd_update(args: argparse.Namespace) -> int:
    config = _load(args)
    print("updating images (pull, restart, roll back what does not come back healthy) ...",
          file=sys.stderr, flush=True)  # fmt: skip
    query = "" if args.pull else "?pull=false"
    try:
        status, doc = _call(config, f"/v1/update{query}", args.timeout)
    except AgentUnreachable as exc:
        print(f"aistack update: {exc}", file=sys.stderr)
        return EX_UNREACHABLE
    if args.json:
        print(json.dumps(doc, indent=2))
    elif "error" in doc:
        print(f"aistack update: {doc['error']['message']}", file=sys.stderr)
    else:
        for name, image in doc["updated"].items():
            print(f"updated     {name} -> {image[:12]}")
        for name, why in doc["rolled_back"].items():
            print(f"ROLLED BACK {name}: {why}")
        for name, why in doc["failed"].items():
            print(f"FAILED      {name}: {why}")
        if doc["unchanged"]:
            print(f"unchanged   {', '.join(doc['unchanged'])}")
    return 0 if status == 200 else EX_FAILED


def _unknown(command: str, name: str, known: tuple[str, ...]) -> int:
    print(f"aistack {command}: no service {name!r}; the stack has: {', '.join(known)}",
          file=sys.stderr)  # fmt: skip
    return EX_USAGE


def _act(args: argparse.Namespace, action: str) -> int:
    config = _load(args)
    known = extra.member_names(config.stack)  # core + stack.extra, in start order
    if args.service and args.service not in known:
        return _unknown(args.command, args.service, known)
    if args.service:
        names = [args.service]
    else:
        names = list(reversed(known)) if action == "stop" else list(known)
    code = 0
    for name in names:
        print(f"{action} {name} ...", file=sys.stderr, flush=True)
        try:
            _, doc = _call(config, f"/v1/services/{name}/{action}", args.timeout)
        except AgentUnreachable as exc:
            print(f"aistack {action}: {exc}", file=sys.stderr)
            return EX_UNREACHABLE
        if "error" in doc:
            print(f"aistack {action}: {doc['error']['message']}", file=sys.stderr)
            code = EX_FAILED
        else:
            print(f"{name:11} {doc['result']:8} {doc['active_state']}")
            code = code or (0 if doc["ok"] else EX_FAILED)
    return code


def cmd_down(args: argparse.Namespace) -> int:
    return _act(args, "stop")


def cmd_restart(args: argparse.Namespace) -> int:
    return _act(args, "restart")


def _size(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def cmd_models(args: argparse.Namespace) -> int:
    """Talk to Ollama directly (gpu.ollama_url): no agent needed."""
    config = _load(args)
    base = config.gpu.ollama_url
    try:
        if args.action == "list":
            rows = models.list_models(base)
            if args.json:
                print(json.dumps([m.__dict__ for m in rows], indent=2))
            else:
                print(f"{'NAME':40} {'SIZE':>10}  MODIFIED")
                for m in rows:
                    print(f"{m.name:40} {_size(m.size):>10}  {m.modified_at}")
        elif args.action == "pull":
            _pull_with_progress(base, args.name)
        else:
            models.remove(base, args.name)
            print(f"removed {args.name}")
    except models.OllamaError as exc:
        print(f"aistack models: {exc}", file=sys.stderr)
        return EX_FAILED
    return 0


def _pull_with_progress(base: str, name: str) -> None:
    """A one-line progress bar on a terminal; a line per step (and per 10 %) elsewhere."""
    tty = sys.stderr.isatty()
    last = ("", -1)
    for step in models.pull(base, name):
        pct = -1
        if step.total:
            pct = int(100 * (step.completed or 0) / step.total)
        if tty:
            bar = ""
            if pct >= 0:
                filled = pct * 30 // 100
                bar = f" [{'#' * filled}{'.' * (30 - filled)}] {pct:3d}%"
            print(f"\r{step.status[:40]:40}{bar}", end="", file=sys.stderr, flush=True)
        elif (step.status, pct // 10) != last:
            suffix = f" {pct}%" if pct >= 0 else ""
            print(f"{step.status}{suffix}", file=sys.stderr, flush=True)
        last = (step.status, pct // 10)
    if tty:
        print(file=sys.stderr)
    if last[0] != "success":
        raise models.OllamaError(f"pull {name} ended with {last[0]!r}, not success")
    print(f"pulled {name}")


def cmd_psql(args: argparse.Namespace) -> int:
    """The seed's "Access Database": psql inside the postgres container."""
    pg = _load(args).stack.postgres
    argv = ["podman", "exec", "-it", "postgres", "psql", "-U", pg.user, "-d", pg.database]
    os.execvp(argv[0], argv)


def cmd_secrets(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        status, doc = _call(config, f"/v1/secrets/{args.name}/rotate", args.timeout)
    except AgentUnreachable as exc:
        print(f"aistack secrets: {exc}", file=sys.stderr)
        return EX_UNREACHABLE
    if "error" in doc:
        print(f"aistack secrets: {doc['error']['message']}", file=sys.stderr)
        return EX_FAILED
    for r in doc["restarted"]:
        print(f"restarted {r['service']:11} {r['result']}")
    print(f"rotated {args.name}; its file: /etc/aistack/secrets/{args.name}")
    return 0 if status == 200 else EX_FAILED


def cmd_logs(args: argparse.Namespace) -> int:
    known = extra.member_names(_load(args).stack)
    if args.service not in known:
        return _unknown("logs", args.service, known)
    argv = ["journalctl", "--no-pager", "-u", f"{args.service}.service", "-n", str(args.lines)]
    if args.follow:
        argv.append("--follow")
    os.execvp(argv[0], argv)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    render_cmd = sub.add_parser(
        "render",
        help="show the stack's units as the config renders them (touches nothing)",
        description="Render the stack's quadlet units from the templates and the `stack:` "
        "section of the config, for this host's Podman and systemd versions and GPU. "
        "Prints every file, or with --diff what would change against the installed ones.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render_cmd.add_argument("--diff", action="store_true", help="unified diff against installed")
    render_cmd.add_argument("--json", action="store_true", help="files, changes, facts as JSON")
    render_cmd.set_defaults(func=cmd_render)

    epilog = __doc__.split("\n\n", 2)[2]
    fmt = argparse.RawDescriptionHelpFormatter
    up = sub.add_parser(
        "up", help="apply the config and start the stack (through the agent)",
        description="Apply the stack through the running agent: render the units, write what "
        "changed, start or restart in dependency order, wait until healthy, report. Running it "
        "again with the same config changes and restarts nothing.",
        epilog=epilog, formatter_class=fmt,
    )  # fmt: skip
    up.add_argument("--purge-data", action="store_true",
                    help="delete the volumes of services removed from the config")  # fmt: skip
    up.add_argument("--json", action="store_true", help="print the agent's report as JSON")
    up.add_argument("--timeout", type=float, default=1800, help="seconds to wait (1800)")
    up.set_defaults(func=cmd_up)
    for name, func, what in (("down", cmd_down, "stop"), ("restart", cmd_restart, "restart")):
        p = sub.add_parser(
            name, help=f"{what} one service, or the whole stack in order",
            description=f"{what.capitalize()} SERVICE (ollama, open-webui, litellm, postgres, "
            "or an extra service of stack.extra, e.g. tools-web), or every enabled one in "
            "dependency order, through the agent.",
            epilog=epilog, formatter_class=fmt,
        )  # fmt: skip
        p.add_argument(
            "service",
            nargs="?",
            metavar="SERVICE",
            help=f"one service: {', '.join(ORDER)} or an extra one (default: all)",
        )
        p.add_argument("--timeout", type=float, default=1800, help="seconds to wait (1800)")
        p.set_defaults(func=func)
    logs = sub.add_parser(
        "logs", help="a service's log, from the journal",
        description="Show SERVICE's log (journalctl -u SERVICE.service); -f follows it.",
    )  # fmt: skip
    logs.add_argument(
        "service",
        metavar="SERVICE",
        help=f"{', '.join(ORDER)} or an extra service (e.g. tools-web)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=100, help="lines of history (100)")
    logs.set_defaults(func=cmd_logs)

    upd = sub.add_parser(
        "update", help="newer images: pull, restart, roll back on failure (through the agent)",
        description="For each service: pull its image, restart it when the image changed, "
        "and when it does not come back healthy tag the previous image back and restart on "
        "it. Prints what was updated, rolled back or failed.",
        epilog=epilog, formatter_class=fmt,
    )  # fmt: skip
    upd.add_argument(
        "--no-pull",
        dest="pull",
        action="store_false",
        help="use the images in local storage as they are (offline hosts)",
    )
    upd.add_argument("--json", action="store_true", help="print the agent's report as JSON")
    upd.add_argument("--timeout", type=float, default=3600, help="seconds to wait (3600)")
    upd.set_defaults(func=cmd_update)

    mdl = sub.add_parser(
        "models", help="Ollama's models: list, pull (with progress), rm",
        description="List, pull or remove Ollama's models through its API (gpu.ollama_url). "
        "Models listed in stack.ollama.models are also pulled by `aistack up`.",
    )  # fmt: skip
    msub = mdl.add_subparsers(dest="action", required=True, metavar="ACTION")
    mlist = msub.add_parser("list", help="the models Ollama has")
    mlist.add_argument("--json", action="store_true", help="as JSON")
    msub.add_parser("pull", help="pull a model, with progress").add_argument("name")
    msub.add_parser("rm", help="remove a model").add_argument("name")
    mdl.set_defaults(func=cmd_models)

    psql = sub.add_parser(
        "psql", help="psql into the stack's PostgreSQL (as root, podman exec)",
        description="Open psql in the postgres container as stack.postgres.user on "
        "stack.postgres.database (the seed's 'Access Database').",
    )  # fmt: skip
    psql.set_defaults(func=cmd_psql)

    sec = sub.add_parser(
        "secrets", help="rotate a generated secret and restart whoever uses it",
        description="Give a generated secret (litellm-master-key, webui-secret-key) a new "
        "value, store it in Podman, and restart the services that use it, through the agent.",
    )  # fmt: skip
    ssub = sec.add_subparsers(dest="secrets_action", required=True, metavar="ACTION")
    rot = ssub.add_parser("rotate", help="new value for NAME, users restarted")
    rot.add_argument("name", choices=["litellm-master-key", "webui-secret-key"])
    rot.add_argument("--timeout", type=float, default=1800, help="seconds to wait (1800)")
    sec.set_defaults(func=cmd_secrets)
