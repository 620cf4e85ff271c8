"""`aistack`: the command line for people and scripts.

Talks to the running agent over its local API (the address comes from the same config
file the agent reads); `check-config` works without an agent. Exit codes are stable and
listed in `aistack --help`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, client
from .backup.cli import register as register_backup
from .compose.cli import register as register_import_compose
from .config import (
    EX_CONFIG,
    AgentConfig,
    ConfigError,
    effective,
    load_config,
    render_yaml,
    resolve_path,
)
from .doctor.cli import register as register_doctor
from .migrate.cli import register as register_migrate
from .stack.cli import register as register_render
from .tabular import age_text, table

EX_OK = 0
EX_DEGRADED = 1  # the agent answered and reports a degraded stack
EX_USAGE = 2
EX_UNREACHABLE = 3  # no agent answering at the configured address

EXIT_CODES = """exit codes:
  0   success (for status: the agent answered and the stack is ok)
  1   status: the agent answered and reports state degraded
  2   usage error
  3   the agent is not running or not answering at its address
  78  the config file is invalid (EX_CONFIG)"""


def _load(args: argparse.Namespace) -> tuple[AgentConfig, Path]:
    path, explicit = resolve_path(args.config)
    return load_config(path, must_exist=explicit), path


def render_status(doc: dict[str, Any]) -> str:
    up = age_text(doc["uptime_seconds"])
    lines = [
        f"aistack-agent {doc['version']}  state: {doc['state']}  up {up}"
        f"  config: {doc['config_path']}",
    ]
    lines += [f"  ! {reason}" for reason in doc.get("state_reasons", [])]
    rows = [["SOURCE", "STATE", "AGE", "DETAIL"]]
    for name, src in doc["sources"].items():
        detail = src["reason"] or ", ".join(
            f"{k} {v}" for k, v in src["data"].items() if isinstance(v, str | int | float)
        )
        rows.append([name, src["state"], age_text(src["age_seconds"]), detail or "-"])
    lines += ["", table(rows), ""]
    services = doc.get("services") or {}
    if services:
        rows = [["SERVICE", "STATE", "HEALTH", "HEAL", "RESTARTS", "DETAIL"]]
        for name, svc in services.items():
            state = f"{svc['active_state']}/{svc['sub_state']}"
            detail = svc.get("reason") or svc["last_error"] or ", ".join(svc["ports"]) or "-"
            heal = (svc.get("heal") or {}).get("state", "-")
            restarts = f"{svc['restarts']}+{(svc.get('heal') or {}).get('restarts', 0)}"
            rows.append([name, state, svc["health"], heal, restarts, detail])
        lines += [table(rows), ""]
    else:
        lines.append("services: none (the stack is disabled, or not read yet)")
    gpus = doc.get("gpus") or []
    lines.append(f"gpus: {len(gpus)}" if gpus else "gpus: none")
    lines.append(f"backups: {doc.get('backups', {}).get('state', 'unknown')}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    config, _ = _load(args)
    base = args.url or client.api_base(config)
    try:
        answer = client.request(f"{base}/status", args.timeout)
    except client.AgentUnreachable as exc:
        print(f"aistack: {exc}.\nIs it running? Check: systemctl status aistack-agent",
              file=sys.stderr)  # fmt: skip
        return EX_UNREACHABLE
    doc = answer.body  # a 503 (the agent gave up on a service) still carries the document
    if not isinstance(doc, dict) or "state" not in doc:
        print(f"aistack: the agent answered {answer.status}: {answer.error_message()}",
              file=sys.stderr)  # fmt: skip
        return EX_UNREACHABLE
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_status(doc))
    return EX_OK if doc.get("state") == "ok" else EX_DEGRADED


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.file:
        path, explicit = Path(args.file), True
    else:
        path, explicit = resolve_path(args.config)
    config = load_config(path, must_exist=explicit)
    if args.json:
        print(json.dumps({"valid": True, "path": str(path), "config": effective(config)}, indent=2))
    else:
        note = "" if path.exists() else " (file absent: built-in defaults)"
        print(f"# {path}: valid{note}. Effective configuration, secrets redacted:")
        print(render_yaml(config), end="")
    return EX_OK


def cmd_version(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({"version": __version__}))
    else:
        print(f"aistack {__version__}")
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aistack",
        description="Control and inspect the aistack agent, which runs Ollama, Open WebUI, "
        "LiteLLM and PostgreSQL as Podman quadlet units under systemd.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE",
        help="agent config (default: $AISTACK_CONFIG, else /etc/aistack/agent.yaml)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = sub.add_parser(
        "status", help="show the agent's view of the stack",
        description="Ask the running agent for its status (GET /status) and show it as a table.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the raw JSON document")
    status.add_argument("--url", help="agent base URL (default: from the config's api section)")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser(
        "check-config", help="validate a config file and print the effective config",
        description="Validate FILE (default: the agent's config) without touching the running "
        "agent. Prints the effective configuration, defaults filled in and secrets redacted. "
        "Exit 0 when valid, 78 when not, with one line per problem naming its key.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("file", nargs="?", help="config file to check")
    check.add_argument("--json", action="store_true", help="print the effective config as JSON")
    check.set_defaults(func=cmd_check_config)

    version = sub.add_parser("version", help="print the version", description="Print the version.")
    version.add_argument("--json", action="store_true", help='print {"version": ...}')
    version.set_defaults(func=cmd_version)

    register_import_compose(sub)
    register_render(sub)
    register_backup(sub)
    register_doctor(sub)
    register_migrate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        if getattr(args, "json", False):
            print(
                json.dumps({"valid": False, "path": exc.source, "problems": exc.problems}, indent=2)
            )
        print(f"aistack: {exc.render()}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
