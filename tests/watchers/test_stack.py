"""The stack watcher's event hooks: which container events and unit signals wake it.

A wake-up costs a poll (D-Bus + the Podman API), so the noise is filtered: health_status
repeats on every health check, and the agent's own probe execs are not state changes.
"""

from __future__ import annotations

from agent.config import AgentConfig, WatchConfig, parse_config
from agent.snapshot import SnapshotStore
from agent.views import to_json
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
