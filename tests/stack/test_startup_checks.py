"""agent.stack.startup_checks: when the agent runs a starting container's startup check
early, how often, and when it stops, without Podman.

The container and Podman's answers to the check are injected (what the gateway returns;
a refusal is an injected fault). Against real Podman, with PostgreSQL killed in the
testbed: tests/e2e/test_heal.py.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent import podman_api
from agent.podman_api import Container
from agent.stack.startup_checks import MAX_TRIES, StartupChecks, tries_for

from ..conftest import HANG_S

SOCK = Path("/nonexistent/podman.sock")
FAST = 0.001  # the interval between runs here; nothing below depends on its length


def container(
    health: str = "starting", retries: int | None = 80, running: bool = True
) -> Container:
    return Container(
        id="c1", name="postgres", image="i", image_name="postgres:16", image_digest=None,
        status="running" if running else "exited", running=running, pid=1 if running else 0,
        exit_code=None, oom_killed=False, started_at=None, health=health,
        startup_retries=retries,
    )  # fmt: skip


class Podman:
    """Answers for inspect and for each run of the check, in order; records the runs."""

    def __init__(self, ctr: Container | None, answers: list[str | None] | None = None) -> None:
        self.ctr = ctr
        self.answers = list(answers or [])
        self.runs: list[str] = []
        self.inspects = 0
        self.refuse = False
        self.gate: threading.Event | None = None  # a run waits on it when set
        self.inspected = threading.Event()

    def inspect(self, socket: Path, name: str, timeout: float) -> Container | None:
        self.inspects += 1
        self.inspected.set()
        return self.ctr

    def run(self, socket: Path, name: str, timeout: float) -> str | None:
        if self.gate is not None:
            self.gate.wait(HANG_S)
        self.runs.append(name)
        if self.refuse:
            raise podman_api.PodmanApiError("injected: podman answered 500")
        return self.answers.pop(0) if self.answers else "starting"


def checks(podman: Podman, interval: float = FAST) -> StartupChecks:
    return StartupChecks(SOCK, interval, inspect=podman.inspect, run_check=podman.run)


async def settle(sc: StartupChecks) -> None:
    """Until every early-check task has ended (finished or cancelled)."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("startup-check.")]
    async with asyncio.timeout(HANG_S):
        await asyncio.gather(*tasks, return_exceptions=True)
    assert not sc.running


async def under_way(podman: Podman) -> None:
    """Until the task has looked at the container (its first run is then held at the gate)."""
    assert await asyncio.to_thread(podman.inspected.wait, HANG_S)


def test_tries_spend_at_most_a_quarter_of_the_startup_budget() -> None:
    assert tries_for(None) == 0  # no startup check: nothing to hasten
    assert tries_for(0) == MAX_TRIES  # no limit in Podman
    assert tries_for(80) == MAX_TRIES  # PostgreSQL's 80: 20
    assert tries_for(40) == 10
    assert tries_for(3) == 0  # a tight budget is Podman's alone


async def test_runs_until_the_check_passes_then_stops() -> None:
    podman = Podman(container(), ["starting", "starting", "healthy", "healthy"])
    sc = checks(podman)
    with capture_logs() as logs:
        sc.on_event("postgres", "start")
        await settle(sc)
    assert podman.runs == ["postgres"] * 3  # the third passed; no run after it
    (entry,) = [e for e in logs if e["event"] == "early startup checks"]
    assert (entry["container"], entry["outcome"], entry["runs"]) == ("postgres", "healthy", 3)


async def test_stops_when_the_container_goes_away_between_runs() -> None:
    podman = Podman(container(), ["starting", None, "healthy"])
    sc = checks(podman)
    sc.on_event("postgres", "start")
    await settle(sc)
    assert len(podman.runs) == 2


async def test_never_spends_more_than_its_share_of_the_budget() -> None:
    podman = Podman(container(retries=40))  # never passes
    sc = checks(podman)
    sc.on_event("postgres", "start")
    await settle(sc)
    assert len(podman.runs) == 10


@pytest.mark.parametrize(
    "ctr",
    [
        None,  # removed before it was looked at
        container(running=False),
        container(health="healthy"),  # its startup check passed already
        container(health=""),  # no health check at all
        container(retries=None),  # a regular check only: its misses could mark it
        container(retries=2),  # a budget too small to share
    ],
)
async def test_leaves_alone_what_it_must_not_check(ctr: Container | None) -> None:
    podman = Podman(ctr)
    sc = checks(podman)
    sc.on_event("postgres", "start")
    await settle(sc)
    assert podman.inspects == 1
    assert podman.runs == []


async def test_a_refusal_ends_the_early_runs_without_raising() -> None:
    podman = Podman(container())
    podman.refuse = True
    sc = checks(podman)
    sc.on_event("postgres", "start")
    await settle(sc)
    assert podman.runs == ["postgres"]


async def test_off_when_the_interval_is_zero() -> None:
    podman = Podman(container())
    sc = checks(podman, interval=0)
    sc.on_event("postgres", "start")
    assert not sc.running
    await asyncio.sleep(0)
    assert podman.inspects == 0


@pytest.mark.parametrize(
    ("action", "health"),
    [("died", None), ("stop", None), ("remove", None), ("health_status", "healthy")],
)
async def test_an_ending_event_cancels_the_runs(action: str, health: str | None) -> None:
    podman = Podman(container())
    podman.gate = threading.Event()  # the first run waits: the task is mid-way
    sc = checks(podman)
    sc.on_event("postgres", "start")
    assert sc.running == {"postgres"}
    await under_way(podman)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "startup-check.postgres"]
    with capture_logs() as logs:
        sc.on_event("postgres", action, health)
        assert not sc.running
        podman.gate.set()
        async with asyncio.timeout(HANG_S):
            await asyncio.gather(task, return_exceptions=True)
    assert logs[0]["outcome"] == "cancelled"
    assert len(podman.runs) <= 1  # the run in its thread ends; no other follows


async def test_an_unhealthy_event_does_not_cancel() -> None:
    podman = Podman(container())
    podman.gate = threading.Event()
    sc = checks(podman)
    sc.on_event("postgres", "start")
    sc.on_event("postgres", "health_status", "starting")
    sc.on_event("ollama", "died")  # another container's end
    assert sc.running == {"postgres"}
    sc.close()
    podman.gate.set()


async def test_a_new_start_replaces_the_runs_of_the_one_before() -> None:
    podman = Podman(container())
    podman.gate = threading.Event()
    sc = checks(podman)
    sc.on_event("postgres", "start")
    (first,) = [t for t in asyncio.all_tasks() if t.get_name() == "startup-check.postgres"]
    await under_way(podman)
    sc.on_event("postgres", "start")
    await asyncio.sleep(0)
    assert first.cancelled() or first.cancelling()
    assert sc.running == {"postgres"}
    podman.answers = ["healthy"] * 3
    podman.gate.set()
    await settle(sc)
    assert podman.inspects == 2
