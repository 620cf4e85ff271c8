"""The stack watcher's event hooks: which container events and unit signals wake it, and
how they change the published snapshot at once.

A wake-up costs a poll (D-Bus + the Podman API), so the noise is filtered: health_status
repeats on every health check, and the agent's own probe execs are not state changes.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import pytest

from agent.config import AgentConfig, WatchConfig, parse_config
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.views import ServiceView, StackView, freeze_map, to_json
from agent.watchers import stack as stack_module
from agent.watchers.events import ContainerEvent
from agent.watchers.stack import StackWatcher


def watcher(config: AgentConfig | None = None) -> StackWatcher:
    w = StackWatcher(SnapshotStore(), WatchConfig())
    w.configure(config or AgentConfig())
    w.clear_wake()
    return w


def event(name: str, action: str, health: str | None = None, id: str = "c0ffee") -> ContainerEvent:
    return ContainerEvent(id=id, name=name, action=action, time_nano=1_800_000_000 * 10**9,
                          exit_code=137 if action == "died" else None, health=health)  # fmt: skip


def test_a_died_container_of_the_stack_wakes_it_and_is_remembered() -> None:
    w = watcher()
    w.on_container_event(event("ollama", "died"))
    assert w.wake_pending
    assert to_json(w.last_event("ollama")) == {
        "action": "died", "at": "2027-01-15T08:00:00Z", "exit_code": 137, "health": None,
    }  # fmt: skip


def test_other_containers_and_our_own_execs_do_not_wake_it() -> None:
    w = watcher()
    w.on_container_event(event("someone-elses", "died"))
    w.on_container_event(event("postgres", "exec_died"))
    w.on_container_event(event("postgres", "exec"))
    assert not w.wake_pending


def test_health_status_wakes_it_only_when_the_health_changes() -> None:
    w = watcher()
    w.on_container_event(event("litellm", "health_status", "healthy"))
    assert w.wake_pending
    w.clear_wake()
    w.on_container_event(event("litellm", "health_status", "healthy"))  # every check repeats
    assert not w.wake_pending
    w.on_container_event(event("litellm", "health_status", "unhealthy"))
    assert w.wake_pending


def test_a_new_containers_first_health_is_news() -> None:
    """Seen in the testbed: postgres restarted, its new container's first `healthy` was
    taken for the old one's, and the healer learnt of it a poll interval late."""
    w = watcher()
    w.on_container_event(event("postgres", "health_status", "healthy", id="old"))
    w.clear_wake()
    assert w.on_container_event(event("postgres", "health_status", "healthy", id="new"))
    assert w.wake_pending


def test_disabled_services_and_foreign_units_are_ignored() -> None:
    w = watcher(parse_config("stack:\n  open_webui:\n    enabled: false\n"))
    w.on_container_event(event("open-webui", "died"))
    w.on_unit_change("open-webui.service")
    w.on_unit_change("ssh.service")
    assert not w.wake_pending
    assert w.units() == {"postgres.service", "ollama.service", "litellm.service"}
    w.on_unit_change("postgres.service")
    assert w.wake_pending


# --- events change the published snapshot at once, before any poll -----------------------

HEALTHY = ServiceView(
    unit="ollama.service", active_state="active", sub_state="running", health="healthy",
    container_state="running", container_id="c0ffee",
)  # fmt: skip


def published(w: StackWatcher, **services: ServiceView) -> None:
    """What the last poll published (the fake poll: the test says what it saw)."""
    w.store.publish(SourceSnapshot("stack", SourceState.OK, None, StackView(freeze_map(services))))


def now_seen(w: StackWatcher, name: str) -> ServiceView:
    snap = w.store.get("stack")
    assert snap is not None
    return snap.view(StackView, StackView()).services[name]


def test_a_died_event_shows_in_the_snapshot_before_any_poll() -> None:
    w = watcher()
    published(w, ollama=HEALTHY)
    w.on_container_event(event("ollama", "died"))
    seen = now_seen(w, "ollama")
    assert (seen.container_state, seen.health, seen.last_error) == (
        "exited", "unknown", "container exited",
    )  # fmt: skip
    assert seen.last_event is not None and seen.last_event.exit_code == 137
    snap = w.store.get("stack")
    assert snap is not None and snap.state is SourceState.DEGRADED
    assert snap.reason == "ollama: container exited"
    assert w.wake_pending  # the poll that confirms it follows


def test_health_and_a_new_containers_start_patch_the_entry() -> None:
    w = watcher()
    published(w, ollama=HEALTHY)
    w.on_container_event(event("ollama", "health_status", "unhealthy"))
    assert now_seen(w, "ollama").last_error == "health check failing"
    w.on_container_event(event("ollama", "died"))
    w.on_container_event(event("ollama", "start", id="beef"))
    seen = now_seen(w, "ollama")
    assert (seen.container_id, seen.container_state, seen.health) == ("beef", "running", "unknown")
    assert seen.last_error is None


def test_a_late_event_of_the_old_container_changes_nothing() -> None:
    w = watcher()
    published(w, ollama=replace(HEALTHY, container_id="new"))
    before = w.store.get("stack")
    w.on_container_event(event("ollama", "died", id="old"))
    assert w.store.get("stack") is before


def test_a_unit_signal_with_its_state_patches_the_entry() -> None:
    w = watcher()
    published(w, ollama=HEALTHY)
    w.on_unit_change("ollama.service", {"ActiveState": "deactivating", "SubState": "stop-sigterm"})
    seen = now_seen(w, "ollama")
    assert (seen.active_state, seen.sub_state) == ("deactivating", "stop-sigterm")
    assert seen.last_error == "deactivating (stop-sigterm)"
    w.on_unit_change("ollama.service", {})  # JobRemoved: no state in it, only a wake-up
    assert now_seen(w, "ollama") == seen


def test_nothing_is_patched_while_the_source_is_unavailable() -> None:
    w = watcher()
    w.store.publish(SourceSnapshot("stack", SourceState.UNAVAILABLE, "D-Bus down"))
    w.on_container_event(event("ollama", "died"))
    snap = w.store.get("stack")
    assert snap is not None and snap.state is SourceState.UNAVAILABLE


async def test_a_poll_under_way_when_the_event_came_keeps_the_events_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll read the service before the event: publishing it would flip the entry
    back for a moment. It keeps the event's entry; the poll the event woke has the truth."""
    w = watcher()
    published(w, ollama=HEALTHY)
    reading = threading.Event()
    release = threading.Event()

    def fake_read(*args: Any, **kwargs: Any) -> tuple[dict[str, ServiceView], bool]:
        reading.set()
        release.wait(5)
        return {"ollama": HEALTHY}, False  # what it read before the kill

    monkeypatch.setattr(stack_module, "read_services", fake_read)
    poll = asyncio.create_task(w.poll_once())
    await asyncio.to_thread(reading.wait, 5)
    w.on_container_event(event("ollama", "died"))
    release.set()
    await poll
    assert now_seen(w, "ollama").container_state == "exited"
    assert w.wake_pending
    # the next poll starts after the event: what it reads is published
    monkeypatch.setattr(stack_module, "read_services", lambda *a, **k: ({"ollama": HEALTHY}, False))
    await w.poll_once()
    assert now_seen(w, "ollama").container_state == "running"


def test_a_process_exit_from_the_kernel_shows_at_once() -> None:
    w = watcher()
    published(w, ollama=replace(HEALTHY, pid=4242))
    w.on_process_exit("ollama", "c0ffee")
    seen = now_seen(w, "ollama")
    assert (seen.container_state, seen.last_error) == ("exited", "container exited")
    assert w.wake_pending
