"""`aistack doctor` in the testbed, against the real stack: the deb installed, the agent
running, `aistack up` with the stand-in images and a real PostgreSQL. Healthy, it finds no
problem; with Open WebUI cut off the network, or PostgreSQL stopped, it names the problem
and its fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import gauntlet, testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

AGENT = testbed.AGENT_UNIT
SERVICES = list(testbed.STACK_SERVICES)


@pytest.fixture
def stack(
    guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str
) -> Iterator[Guest]:
    """The agent installed from the deb and running, the stack applied and healthy."""
    # the stand-in's models on the CPU (its default reports them in VRAM)
    cpu = "    env: {OLLAMA_STANDIN_GPU: 0}\n"
    config = testbed.stack_config(standin_images, postgres_image, ollama_extra=cpu)
    testbed.start_stack(guest, agent_deb, config)
    yield guest
    testbed.remove_stack(guest)


def _doctor(guest: Guest) -> tuple[int, dict[str, Any]]:
    res = guest.run(["aistack", "doctor", "--json"], check=False, timeout=300)  # hang guard
    assert res.returncode in (0, 1), f"{res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.returncode, json.loads(res.stdout)


def _problems(doc: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["check"] == check and f["severity"] == "problem"]


def test_doctor_on_the_real_stack(stack: Guest) -> None:
    guest = stack
    # healthy: no problem anywhere, and every check looked for real
    code, doc = _doctor(guest)
    assert code == 0 and doc["problems"] == 0, json.dumps(doc, indent=2)
    by_check = {f["check"]: f for f in doc["findings"]}
    assert by_check["podman"]["summary"].startswith("Podman 5.")
    assert by_check["network"]["summary"].startswith("aistack: DNS on; attached: postgres")
    services = [f for f in doc["findings"] if f["check"] == "services"]
    assert [f["summary"] for f in services] == [f"{s}: active, healthy" for s in SERVICES]
    assert by_check["webui-ollama"]["summary"].startswith("open-webui reaches Ollama")
    postgres = [f["summary"] for f in doc["findings"] if f["check"] == "postgres"]
    assert postgres == [
        "accepts connections (litellm as llmproxy)",
        "LiteLLM's database: connected (/health/readiness)",
    ]
    assert by_check["gpu"]["summary"] == "stack.gpu: none: CPU inference"
    memory = by_check["memory"]["summary"]
    assert " available; " in memory and memory.endswith("(CPU inference)"), memory

    # the seed's "Open WebUI can't connect to Ollama": open-webui off the network
    guest.podman("network", "disconnect", "aistack", "open-webui")
    code, doc = _doctor(guest)
    assert code == 1
    [webui] = _problems(doc, "webui-ollama")
    assert "open-webui cannot reach Ollama at http://ollama:11434" in webui["summary"]
    assert "aistack restart open-webui" in webui["fix"], webui
    [network] = _problems(doc, "network")
    assert network["summary"].startswith("open-webui runs but is not attached")

    # Back on the network, as doctor's fix says, and settled: a restart of open-webui
    # still under way would pull LiteLLM (Wants=) and so postgres, cancelling the stop.
    guest.run(["aistack", "restart", "open-webui"], timeout=300)  # hang guard
    guest.wait_for("the stack healthy again", lambda: gauntlet.recovered(guest), timeout=300)

    # the seed's "Database connection error": postgres stopped (LiteLLM stops with it)
    guest.run(["systemctl", "stop", "postgres.service"], timeout=120)
    code, doc = _doctor(guest)
    assert code == 1
    [pg] = _problems(doc, "postgres")
    assert pg["summary"] == "postgres is not running: LiteLLM has no database", pg
    assert pg["fix"].startswith("aistack restart postgres")
    stopped = {f["summary"] for f in _problems(doc, "services")}
    assert "postgres: not running (unit inactive)" in stopped, stopped

    # the readable form: marker, check, summary, and the fix under each problem
    res = guest.run(["aistack", "doctor"], check=False, timeout=120)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("✗ postgres"))
    assert lines[i + 1].strip().startswith("fix: aistack restart postgres")
    assert lines[-1].startswith(f"{sum(line.startswith('✗') for line in lines)} problems")
