"""The service probes against the real stack: the agent installed from the deb, the
quadlet units under systemd, the containers on the aistack bridge network (stand-in
images, real PostgreSQL 17). probe_all runs inside the guest as a systemd service without
capabilities, like the agent: HTTP to the containers' bridge addresses, pg_isready and
Open WebUI's curl through the libpod exec API.

Faults come from the stand-ins' switches (/run/fault/500, /run/fault/hang) and from
stopping units. The agent is stopped once the stack is up, so that nothing heals the
faults while they are being looked at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

AGENT = testbed.AGENT_UNIT
SERVICES = list(testbed.STACK_SERVICES)

# Run in the guest with the installed package (the launchers' path, /usr/lib/aistack).
PROBE_SCRIPT = """
import asyncio, dataclasses, json, sys
sys.path[:0] = ["/usr/lib/aistack"]
from pathlib import Path
from agent import podman_api
from agent.config import load_config
from agent.stack.probes import probe_all
from agent.stack.model import SERVICES
stack = load_config(Path("/etc/aistack/agent.yaml")).stack
sock = Path("/run/podman/podman.sock")
containers = {s.name: podman_api.inspect_container(sock, s.name) for s in SERVICES}
results = asyncio.run(probe_all(stack, sock, float(sys.argv[1]), containers))
print(json.dumps({k: dataclasses.asdict(v) for k, v in results.items()}))
"""


@pytest.fixture
def stack(
    guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str
) -> Iterator[Guest]:
    """The stack applied by the installed agent; the agent stopped afterwards."""
    config = testbed.stack_config(standin_images, postgres_image)
    report = testbed.start_stack(guest, agent_deb, config)
    assert report is not None and report["ok"], report
    guest.run(["systemctl", "stop", AGENT], timeout=60)
    yield guest
    guest.run(["systemctl", "start", AGENT], check=False, timeout=90)
    testbed.remove_stack(guest)


def _probe(guest: Guest, timeout: float) -> dict[str, Any]:
    """probe_all in the guest, as a capability-less service (as the agent runs)."""
    res = guest.run_unit(
        ["python3", "-c", PROBE_SCRIPT, str(timeout)],
        properties=["CapabilityBoundingSet=", "NoNewPrivileges=yes"],
        timeout=timeout * 4 + 30,
    )
    results: dict[str, Any] = json.loads(res.stdout)
    return results


def _checks(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


def test_probes_on_the_real_stack(stack: Guest) -> None:
    guest = stack

    # --- all healthy: every service ok, no warning, the exec checks ran for real
    def all_ok() -> dict[str, Any] | None:
        results = _probe(guest, 5)
        return results if all(r["ok"] and not r["warnings"] for r in results.values()) else None

    try:
        results = guest.wait_for("every probe ok", all_ok, timeout=60, interval=2)
    except TimeoutError:
        pytest.fail(f"probes not all ok: {json.dumps(_probe(guest, 5), indent=1)}")
    assert list(results) == SERVICES
    assert _checks(results["postgres"])["pg_isready"]["ok"]
    webui = _checks(results["open-webui"])
    assert set(webui) == {"health", "health/db", "reach-ollama"}
    assert webui["reach-ollama"]["ok"] and not webui["reach-ollama"]["heals"]
    assert re.fullmatch(r"\d+ models? loaded", _checks(results["ollama"])["api/ps"]["detail"])
    assert set(_checks(results["litellm"])) == {"liveliness", "readiness"}

    # --- Ollama answers 500: not ok with the answer in the reason; Open WebUI warns only
    guest.podman("exec", "ollama", "touch", "/run/fault/500")
    try:
        results = _probe(guest, 3)
    finally:
        guest.podman("exec", "ollama", "rm", "-f", "/run/fault/500")
    ollama = results["ollama"]
    assert not ollama["ok"]
    assert ollama["reason"].startswith("ollama: /api/version answered 500: "), ollama
    assert "injected fault" in ollama["reason"]
    webui = results["open-webui"]
    assert webui["ok"] and webui["reason"] is None, webui
    assert any("cannot reach Ollama at http://ollama:11434" in w for w in webui["warnings"])

    # --- LiteLLM hangs: cut at the timeout, every service still probed in time
    guest.podman("exec", "litellm", "touch", "/run/fault/hang")
    try:
        results = _probe(guest, 3)
    finally:
        guest.podman("exec", "litellm", "rm", "-f", "/run/fault/hang")
    litellm = results["litellm"]
    assert not litellm["ok"] and "did not answer within 3s" in litellm["reason"], litellm
    assert results["postgres"]["ok"] and results["ollama"]["ok"], results

    # --- Ollama stopped: gone for its own probe; Open WebUI stays ok and says why
    guest.run(["systemctl", "stop", "ollama.service"], timeout=120)
    results = _probe(guest, 5)
    assert results["ollama"]["reason"] == "ollama: no container (is ollama.service running?)"
    webui = results["open-webui"]
    assert webui["ok"], webui
    (warning,) = webui["warnings"]
    assert warning.startswith(
        "open-webui: cannot reach Ollama at http://ollama:11434 from its network namespace ("
    ), warning
    assert "podman network inspect aistack" in warning

    # --- PostgreSQL stopped (LiteLLM left running: its Requires= not followed): LiteLLM's
    # readiness says its database is gone
    guest.run(["systemctl", "stop", "--job-mode=ignore-requirements", "postgres.service"],
              timeout=120)  # fmt: skip
    assert guest.unit_properties("litellm.service", "ActiveState")["ActiveState"] == "active"
    results = _probe(guest, 5)
    assert results["postgres"]["reason"] == "postgres: no container (is postgres.service running?)"
    litellm = results["litellm"]
    assert not litellm["ok"], litellm
    assert "litellm: database not connected (readiness: db=" in litellm["reason"], litellm
    assert _checks(litellm)["liveliness"]["ok"]
