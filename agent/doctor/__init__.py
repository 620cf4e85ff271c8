"""`aistack doctor`: the seed's troubleshooting list, run for you, with a fix for each finding.

The seed's list ("Open WebUI can't connect to Ollama", "Database connection error", "Model
loading slow", "Ollama not responding", GPU) is what people type by hand: `network
inspect`, `exec open-webui curl ...`, `pg_isready`, `docker stats`, `nvidia-smi`. Doctor
does the same from the host, as root: the libpod API socket (inspect and exec, as the
agent does), systemd over D-Bus, the agent's /status, /proc and statvfs. It changes nothing.

Every check runs in its own thread with a deadline (CHECK_LIMIT_S), and every call inside
one has a shorter timeout: a hung Podman or D-Bus makes its checks say so, it never hangs
doctor, and a check that fails never stops the others. Once Podman did not answer, the
checks that need it say so instead of each waiting for it in turn.

The package: `context` (findings, limits, the Context every check reads), one module per
family of checks (`checks_host`, `checks_services`, `checks_resources`), `run` (running
them and printing), `cli` (the command). This module names its public API.

Exit codes: 0 no problems (warnings allowed), 1 at least one problem, 78 invalid config.
"""

from .checks_host import check_disk, disk_finding
from .checks_resources import GpuFacts, ModelSize, judge_gpu, memory_findings
from .checks_services import ollama_urls
from .cli import cmd_doctor, register
from .context import (
    CHECK_LIMIT_S,
    FIX_PODMAN_FIRST,
    OK,
    PROBLEM,
    WARNING,
    Context,
    Finding,
    Severity,
    parse_meminfo,
)
from .run import CHECKS, counts, exit_code, render, run_checks, to_json

__all__ = [
    "CHECKS",
    "CHECK_LIMIT_S",
    "FIX_PODMAN_FIRST",
    "OK",
    "PROBLEM",
    "WARNING",
    "Context",
    "Finding",
    "GpuFacts",
    "ModelSize",
    "Severity",
    "check_disk",
    "cmd_doctor",
    "counts",
    "disk_finding",
    "exit_code",
    "judge_gpu",
    "memory_findings",
    "ollama_urls",
    "parse_meminfo",
    "register",
    "render",
    "run_checks",
    "to_json",
]
