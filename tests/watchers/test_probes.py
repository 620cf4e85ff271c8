"""The probes source's cadence: a miss is asked again after heal.probe_confirm, so a hang
reaches the restart threshold in seconds; one slow answer followed by a good one restarts
nothing. The probes themselves are faked here (fault injection: the answers are the
test's); agent/stack/probes.py has its own tests against real HTTP servers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent import podman_api
from agent.config import parse_config
from agent.podman_api import Container
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.stack.probes import Check, ProbeResult
from agent.views import ProbesView, ServiceView, StackView, freeze_map
from agent.watchers import probes as probes_module
from agent.watchers.probes import ProbeWatcher

CONFIG = parse_config(
    "stack: {open_webui: {enabled: false}, litellm: {enabled: false}, postgres: {enabled: false}}\n"
    "heal: {probe_interval: 5s, probe_timeout: 2s, probe_confirm: 1s, probe_failures: 3}\n"
)
OLLAMA = Container(id="c1", name="ollama", image="i", image_name="ollama", image_digest=None,
                   status="running", running=True, pid=7, exit_code=None, oom_killed=False,
                   started_at=None, health="healthy")  # fmt: skip


def answers(
    monkeypatch: pytest.MonkeyPatch,
    results: list[bool],
    deep_seen: list[bool] | None = None,
    check_name: str = "api/version",
) -> None:
    async def fake_probe_all(
        *args: Any, deep: bool = True, **kwargs: Any
    ) -> dict[str, ProbeResult]:
        if deep_seen is not None:
            deep_seen.append(deep)
        ok = results.pop(0)
        check = Check(check_name, ok, "ok" if ok else "timed out after 2s", True)
        reason = None if ok else f"ollama: {check_name} timed out after 2s"
        return {"ollama": ProbeResult("ollama", ok, reason, (check,), ())}

    monkeypatch.setattr(probes_module, "probe_all", fake_probe_all)
    monkeypatch.setattr(podman_api, "inspect_container", lambda *a, **k: OLLAMA)


def watcher(clock: list[float] | None = None) -> ProbeWatcher:
    store = SnapshotStore()
    running = ServiceView(unit="ollama.service", active_state="active", health="healthy",
                          container_state="running", container_id="c1")  # fmt: skip
    view = StackView(freeze_map({"ollama": running}))
    store.publish(SourceSnapshot("stack", SourceState.OK, None, view))
    now = clock if clock is not None else [0.0]
    w = ProbeWatcher(store, CONFIG.watch, monotonic=lambda: now[0])
    w.configure(CONFIG)
    return w


async def failures_after(w: ProbeWatcher) -> int:
    snap = await w.poll_once()
    return snap.view(ProbesView, ProbesView()).services["ollama"].failures


async def test_a_miss_is_confirmed_soon_and_a_hang_counts_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    answers(monkeypatch, [True, False, False, False])
    w = watcher()
    assert await failures_after(w) == 0
    assert w.next_interval() == 5.0
    assert await failures_after(w) == 1
    assert w.next_interval() == 1.0  # confirm the miss
    assert await failures_after(w) == 2
    assert w.next_interval() == 1.0
    assert await failures_after(w) == 3  # the threshold: the healer restarts it
    assert w.next_interval() == 5.0  # nothing left to confirm


async def test_one_slow_answer_is_forgiven(monkeypatch: pytest.MonkeyPatch) -> None:
    answers(monkeypatch, [False, True])
    w = watcher()
    assert await failures_after(w) == 1
    assert w.next_interval() == 1.0
    assert await failures_after(w) == 0
    assert w.next_interval() == 5.0


def test_probe_confirm_longer_than_the_interval_is_refused() -> None:
    from agent.config import ConfigError

    with pytest.raises(ConfigError, match=r"heal\.probe_confirm"):
        parse_config("heal: {probe_interval: 5s, probe_confirm: 10s}\n")


async def test_exec_checks_run_every_30s_and_to_confirm_a_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rounds between ask over the network only: a `podman exec` every 5 s would
    leave a hundred finished exec sessions (and their conmons) around."""
    deep: list[bool] = []
    answers(monkeypatch, [True, True, True, False, True, True], deep)
    clock = [1000.0]
    w = watcher(clock)
    for at in (1000.0, 1005.0, 1031.0, 1036.0, 1037.0, 1042.0):
        clock[0] = at
        await w.poll_once()
    # first round deep; 5 s later not; 31 s after the first deep; the miss at 1036 (of a
    # network check) is confirmed over the network at 1037; 1042 is within 30 s of 1031
    assert deep == [True, False, True, False, False, False]


async def test_a_miss_of_an_exec_check_is_confirmed_by_the_exec_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rounds: list[bool] = []
    answers(monkeypatch, [True, False, True], rounds, check_name="pg_isready")
    clock = [1000.0]
    w = watcher(clock)
    for at in (1000.0, 1031.0, 1032.0):
        clock[0] = at
        await w.poll_once()
    # the exec check's miss at 1031 is carried as failing: 1032 asks the exec checks again
    assert rounds == [True, True, True]


async def test_a_new_container_and_a_standing_warning_are_asked_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A carried warning must clear as soon as its cause is fixed, not 30 s later, and a
    new container is asked everything at once."""
    rounds: list[bool] = []
    warn = [True, True, False]  # the reach check fails in the first two deep rounds

    async def fake_probe_all(
        *args: Any, deep: bool = True, **kwargs: Any
    ) -> dict[str, ProbeResult]:
        rounds.append(deep)
        checks = [Check("api/version", True, "ok", True)]
        if deep:
            failing = warn.pop(0)
            checks.append(
                Check("reach-ollama", not failing, "cannot reach" if failing else "ok", False)
            )
        warnings = tuple(f"ollama: {c.detail}" for c in checks if not c.ok)
        return {"ollama": ProbeResult("ollama", True, None, tuple(checks), warnings)}

    ids = ["c1", "c1", "c1", "c1", "c2"]
    monkeypatch.setattr(probes_module, "probe_all", fake_probe_all)
    monkeypatch.setattr(podman_api, "inspect_container",
                        lambda *a, **k: dataclasses.replace(OLLAMA, id=ids.pop(0)))  # fmt: skip
    clock = [1000.0]
    w = watcher(clock)
    for at in (1000.0, 1004.0, 1008.0, 1012.0, 1016.0):
        clock[0] = at
        await w.poll_once()
    # deep (warning) -> deep again (still warning) -> deep (fixed) -> network only -> a new
    # container: deep
    assert rounds == [True, True, True, False, True]


PG_CONFIG = parse_config(
    "stack: {open_webui: {enabled: false}, ollama: {enabled: false}}\n"
    "heal: {probe_interval: 5s, probe_timeout: 2s, probe_confirm: 1s, probe_failures: 2}\n"
)


def pg_stack(postgres_id: str, state: str = "active") -> SourceSnapshot[StackView]:
    def svc(name: str, cid: str, requires: tuple[str, ...] = ()) -> ServiceView:
        return ServiceView(unit=f"{name}.service", active_state=state if name == "postgres"
                           else "active", health="healthy", container_state="running",
                           container_id=cid, requires=requires)  # fmt: skip

    services = {
        "postgres": svc("postgres", postgres_id),
        "litellm": svc("litellm", "l1", ("postgres",)),
    }
    return SourceSnapshot("stack", SourceState.OK, None, StackView(freeze_map(services)))


@pytest.mark.parametrize(
    ("during", "expected"),
    [
        (None, ()),  # PostgreSQL up throughout: LiteLLM's miss is its own
        (pg_stack("p2"), ("postgres",)),  # killed and back, in a new container, meanwhile
        (pg_stack("p1", "activating"), ("postgres",)),  # down when the round ended
    ],
)
async def test_a_miss_while_a_dependency_was_down_names_it(
    monkeypatch: pytest.MonkeyPatch,
    during: SourceSnapshot[StackView] | None,
    expected: tuple[str, ...],
) -> None:
    store = SnapshotStore()
    store.publish(pg_stack("p1"))

    async def fake_probe_all(*args: Any, **kwargs: Any) -> dict[str, ProbeResult]:
        if during is not None:  # the stack watcher publishes while the probes run
            store.publish(during)
        check = Check("health/readiness", False, "db: disconnected", True)
        return {
            "postgres": ProbeResult("postgres", True, None, (), ()),
            "litellm": ProbeResult("litellm", False, "litellm: db", (check,), ()),
        }

    def inspect(socket: Path, name: str, timeout: float) -> Container:
        cid = {"postgres": "p1", "litellm": "l1"}[name]
        return dataclasses.replace(OLLAMA, id=cid, name=name)

    monkeypatch.setattr(probes_module, "probe_all", fake_probe_all)
    monkeypatch.setattr(podman_api, "inspect_container", inspect)
    w = ProbeWatcher(store, PG_CONFIG.watch, monotonic=lambda: 0.0)
    w.configure(PG_CONFIG)
    services = (await w.poll_once()).view(ProbesView, ProbesView()).services
    assert services["litellm"].failures == 1  # still counted: the healer decides
    assert services["litellm"].deps_down == expected
    assert services["postgres"].deps_down == ()
