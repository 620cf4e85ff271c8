"""`aistack doctor`'s backends check against real HTTP servers on 127.0.0.1 standing in
for the GPU hosts' Ollamas: up with its models and latency, a declared model missing
(with the pull to run, and where), down; nothing configured."""

from __future__ import annotations

import re
from contextlib import ExitStack

from agent.config import AgentConfig, parse_config
from agent.doctor import CHECKS, OK, PROBLEM, Context, run_checks
from agent.doctor.checks_backends import check_backends

from ..fixtures.gpu.support import closed_url
from ..fixtures.ollama import serve_ollama


def test_each_backend_is_a_finding_a_person_can_act_on() -> None:
    with ExitStack() as stack:
        full, full_url = stack.enter_context(serve_ollama())
        full.installed = ["llama3.2:1b", "qwen2.5:0.5b"]
        partial, partial_url = stack.enter_context(serve_ollama())
        partial.installed = ["qwen2.5:0.5b:latest"]
        gone = closed_url()
        config = parse_config(
            "stack:\n  ollama: {enabled: false, models: [llama3.2:1b, qwen2.5:0.5b]}\n"
            f"  litellm: {{ollama_backends: [{full_url}, {partial_url}, {gone}]}}\n"
        )
        up, missing, down = check_backends(Context(config, "http://127.0.0.1:1"))
    name = full_url.removeprefix("http://")
    assert up.severity == OK
    assert re.fullmatch(rf"{re.escape(name)}: up, 2 models, \d+ ms", up.summary), up.summary
    assert missing.severity == PROBLEM
    assert missing.summary == f"{partial_url.removeprefix('http://')}: missing llama3.2:1b"
    assert missing.fix is not None
    assert missing.fix.startswith("run `aistack models pull llama3.2:1b` on 127.0.0.1")
    assert down.severity == PROBLEM
    assert down.summary.startswith(f"{gone.removeprefix('http://')}: down (Ollama is not answering")
    assert down.fix is not None and "stack.ollama.allow_remote" in down.fix


def test_nothing_configured_is_fine_and_the_check_is_run() -> None:
    [finding] = check_backends(Context(AgentConfig(), "http://127.0.0.1:1"))
    assert finding.severity == OK and "no remote Ollama backends" in finding.summary
    assert "backends" in [name for name, _ in CHECKS]
    only = [(name, check) for name, check in CHECKS if name == "backends"]
    assert run_checks(Context(AgentConfig(), "http://127.0.0.1:1"), only) == [finding]
