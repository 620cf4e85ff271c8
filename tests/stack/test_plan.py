"""The apply's plan, decided without a host: which files are written and removed, which
services stop, start and restart, and in what order. The rendered units are real (the
shipped templates); the "host" is a dict of installed files and a dict of unit states."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.quadlet.keys import PodmanVersion
from agent.stack.model import ORDER, unit_of
from agent.stack.plan import Plan, Start, changes, plan, planned
from agent.stack.render import LITELLM_CONFIG, HostFacts, Rendered, render

UNIT_DIR = Path("/etc/containers/systemd/aistack")
FACTS = HostFacts(PodmanVersion(5, 4), 257, "none")
ALL_ACTIVE = {unit_of(name): "active" for name in ORDER}


def _render(yaml: str = "") -> Rendered:
    return render(parse_config(yaml).stack, FACTS)


def _installed(rendered: Rendered) -> dict[Path, str]:
    """The host after an apply of `rendered`."""
    return planned(rendered, UNIT_DIR)


def test_a_fresh_host_writes_everything_and_starts_in_order() -> None:
    rendered = _render()
    todo = plan(rendered, UNIT_DIR, {}, {})
    assert set(todo.write) == set(planned(rendered, UNIT_DIR))
    assert LITELLM_CONFIG in todo.write and UNIT_DIR / "aistack.network" in todo.write
    assert todo.daemon_reload and not todo.remove and not todo.stop
    assert todo.start == tuple(Start(name, "start", "not running") for name in ORDER)
    assert [s.service for s in todo.start] == ["postgres", "ollama", "litellm", "open-webui"]


def test_the_same_config_again_changes_nothing() -> None:
    rendered = _render()
    todo = plan(rendered, UNIT_DIR, _installed(rendered), ALL_ACTIVE)
    assert todo == Plan(unchanged=ORDER)
    assert todo.changes_nothing


def test_a_stopped_service_is_started_and_the_rest_left_alone() -> None:
    rendered = _render()
    states = {**ALL_ACTIVE, "ollama.service": "failed"}
    todo = plan(rendered, UNIT_DIR, _installed(rendered), states)
    assert todo.start == (Start("ollama", "start", "not running"),)
    assert todo.unchanged == ("postgres", "litellm", "open-webui") and not todo.write


def test_one_service_changed_restarts_only_it() -> None:
    before = _render()
    after = _render("stack:\n  ollama:\n    env: {OLLAMA_NUM_PARALLEL: 2}\n")
    todo = plan(after, UNIT_DIR, _installed(before), ALL_ACTIVE)
    assert list(todo.write) == [UNIT_DIR / "ollama.container"]
    assert todo.daemon_reload
    assert todo.start == (Start("ollama", "restart", "unit changed"),)


def test_litellms_config_file_restarts_litellm_without_a_reload() -> None:
    before = _render()
    after = _render(
        "stack:\n  litellm:\n    model_list:\n      - model_name: m\n"
        "        litellm_params: {model: ollama/m}\n"
    )
    todo = plan(after, UNIT_DIR, _installed(before), ALL_ACTIVE)
    assert list(todo.write) == [LITELLM_CONFIG]
    assert not todo.daemon_reload  # not a unit: systemd has nothing to re-read
    assert todo.start == (Start("litellm", "restart", "config changed"),)


def test_a_changed_secret_restarts_its_users() -> None:
    rendered = _render()
    todo = plan(rendered, UNIT_DIR, _installed(rendered), ALL_ACTIVE, {"postgres", "litellm"})
    assert todo.start == (
        Start("postgres", "restart", "secret changed"),
        Start("litellm", "restart", "secret changed"),
    )


def test_dropped_services_stop_in_reverse_order_and_their_files_go() -> None:
    before = _render()
    after = _render("stack:\n  litellm: {enabled: false}\n  postgres: {enabled: false}\n")
    todo = plan(after, UNIT_DIR, _installed(before), ALL_ACTIVE)
    assert todo.stop == ("litellm", "postgres")  # the dependent first
    assert set(todo.remove) == {
        UNIT_DIR / "litellm.container", UNIT_DIR / "postgres.container",
        UNIT_DIR / "postgres-data.volume", LITELLM_CONFIG,
    }  # fmt: skip
    assert todo.purge_volumes == ()  # data is kept unless asked
    purged = plan(after, UNIT_DIR, _installed(before), ALL_ACTIVE, purge_data=True)
    assert purged.purge_volumes == ("aistack-postgres-data",)  # litellm has no volume


def test_a_file_the_agent_does_not_render_is_removed_from_its_folder() -> None:
    rendered = _render()
    stray = UNIT_DIR / "left-over.container"
    todo = plan(rendered, UNIT_DIR, {**_installed(rendered), stray: "[Container]\n"}, ALL_ACTIVE)
    assert todo.remove == (stray,) and todo.daemon_reload
    assert todo.stop == ()  # not one of the stack's services: nothing to stop by name


def test_render_diff_reads_the_same_changes_from_disk(tmp_path: Path) -> None:
    rendered = render(parse_config("stack:\n  litellm: {enabled: false}\n").stack, FACTS)
    files = {p: t for p, t in planned(rendered, tmp_path).items() if p.parent == tmp_path}
    assert set(changes(files, tmp_path)) == set(files)  # nothing installed yet
    for path, text in files.items():
        path.write_text(text)
    (tmp_path / "stale.container").write_text("x")
    assert changes(files, tmp_path) == {tmp_path / "stale.container": ("x", "")}
