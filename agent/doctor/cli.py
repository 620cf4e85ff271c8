"""`aistack doctor` on the command line."""

from __future__ import annotations

import argparse
import json
import sys

from .. import client
from ..config import load_config, resolve_path
from .context import CHECK_LIMIT_S, Context
from .run import exit_code, render, run_checks, to_json


def cmd_doctor(args: argparse.Namespace) -> int:
    path, explicit = resolve_path(args.config)
    config = load_config(path, must_exist=explicit)
    findings = run_checks(Context(config, client.api_base(config)))
    if args.json:
        print(json.dumps(to_json(findings), indent=2))
    else:
        print(render(findings, sys.stdout.encoding))
    return exit_code(findings)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = sub.add_parser(
        "doctor", help="run the troubleshooting checks; print findings with fixes",
        description="Check what usually breaks the stack: the agent, the Podman socket, the "
        "aistack network and its DNS, each service's unit and health, Open WebUI -> Ollama, "
        "PostgreSQL (pg_isready, LiteLLM's view of it), memory against Ollama's models, the "
        "GPU and free disk. Changes nothing; run it as root on the stack's host. Each check "
        f"takes {CHECK_LIMIT_S:g} s at most. What each looks at: docs/doctor.md.",
        epilog="exit codes:\n  0   no problems (warnings allowed)\n  1   at least one problem"
        "\n  78  the config file is invalid (EX_CONFIG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true",
                        help='print {"findings": [...], "problems": N, "warnings": N}')  # fmt: skip
    # SUPPRESS: when not given here, the top-level `aistack --config FILE doctor` stays
    doctor.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="agent config (default: $AISTACK_CONFIG, else "
                        "/etc/aistack/agent.yaml)")  # fmt: skip
    doctor.set_defaults(func=cmd_doctor)
