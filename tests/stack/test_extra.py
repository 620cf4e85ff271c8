"""Extra services in the managed stack (stack.extra): a compose project read by the real
importer in stack mode, joined to the catalogue, rendered, planned, watched and healed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import ConfigError, HealConfig, StackConfig, parse_config
from agent.heal.healer import dependencies
from agent.heal.policy import Observation, decide
from agent.quadlet import PodmanVersion
from agent.snapshot import SourceSnapshot, SourceState
from agent.stack import extra
from agent.stack.model import unit_of
from agent.stack.plan import plan, planned
from agent.stack.render import ExtraUnits, HostFacts, Rendered, render
from agent.views import ServiceView, StackView, freeze_map
from agent.watchers.stack import describe

TARGET = PodmanVersion(5, 4)
FACTS = HostFacts(TARGET, 257, "none")
UNIT_DIR = Path("/etc/containers/systemd/aistack")

TOOLS = """\
services:
  init:
    image: docker.io/library/busybox
    command: ["sh", "-c", "echo hello > /data/index.html"]
    volumes: [data:/data]
  web:
    image: docker.io/library/busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/data"]
    ports: ["127.0.0.1:18080:8080"]
    volumes: [data:/data]
    restart: unless-stopped
    healthcheck: {test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"], interval: 5s}
    depends_on:
      init: {condition: service_completed_successfully}
  worker:
    image: docker.io/library/busybox
    command: ["sh", "-c", "while nc -z db 5432; do sleep 2; done"]
    restart: unless-stopped
    depends_on: [db]
  db:
    image: postgres:16
volumes:
  data: {}
"""


def _project(tmp_path: Path, text: str = TOOLS, name: str = "tools") -> Path:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text(text)
    return path


def _stack(*files: Path, more: str = "", project: str = "tools") -> StackConfig:
    listed = ", ".join(str(f) for f in files)
    return parse_config(
        f"stack:\n{more}  extra:\n    - project: {project}\n      files: [{listed}]\n"
    ).stack


def _render(stack: StackConfig) -> Rendered:
    found = extra.load(stack, TARGET)
    assert found.problems == {}
    return render(stack, FACTS, extras=ExtraUnits(found.files, found.services))


def test_members_come_after_the_core_in_start_order(tmp_path: Path) -> None:
    stack = _stack(_project(tmp_path))
    names = [m.name for m in extra.members(stack)]
    assert names == ["postgres", "ollama", "litellm", "open-webui",
                     "tools-init", "tools-web", "tools-worker"]  # fmt: skip
    by_name = {m.name: m for m in extra.members(stack)}
    assert by_name["tools-init"].oneshot and not by_name["tools-web"].oneshot
    assert by_name["tools-web"].requires == ("tools-init",)
    assert by_name["tools-worker"].requires == ("postgres",)  # `db` is the managed one
    assert by_name["tools-web"].project == "tools" and by_name["postgres"].project is None
    assert by_name["litellm"].requires == ("postgres",)


def test_db_with_the_postgres_image_is_the_managed_postgres(tmp_path: Path) -> None:
    (done,) = extra.load(_stack(_project(tmp_path)), TARGET).projects
    assert done.adopted == {"db": "postgres"}
    assert "tools-db.container" not in done.units
    worker = done.units["tools-worker.container"]
    assert "Requires=postgres.service" in worker and "After=postgres.service" in worker
    for name, text in done.units.items():
        if name.endswith(".container"):  # every container joins the stack's network
            assert "Network=aistack.network" in text and "SuccessExitStatus=143" in text


def test_an_own_database_under_another_name_stays_the_projects(tmp_path: Path) -> None:
    text = TOOLS.replace("depends_on: [db]", "depends_on: [store]").replace("  db:", "  store:")
    (done,) = extra.load(_stack(_project(tmp_path, text)), TARGET).projects
    assert done.adopted == {}
    assert "tools-store.container" in done.units
    assert "Requires=tools-store.service" in done.units["tools-worker.container"]


def test_optional_core_dependency_is_wants(tmp_path: Path) -> None:
    text = TOOLS.replace("depends_on: [db]", "depends_on: {ollama: {required: false}}")
    (done,) = extra.load(_stack(_project(tmp_path, text)), TARGET).projects
    worker = done.units["tools-worker.container"]
    assert "Wants=ollama.service" in worker and "Requires=" not in worker


def test_a_dependency_on_a_disabled_core_service_is_refused(tmp_path: Path) -> None:
    stack = _stack(
        _project(tmp_path), more="  postgres: {enabled: false}\n  litellm: {enabled: false}\n"
    )
    found = extra.load(stack, TARGET)
    assert found.projects == ()
    assert "postgres" in found.problems["tools"] and "disabled" in found.problems["tools"]
    # the core stack goes on: the project is left out of the catalogue, named
    assert [m.name for m in extra.members(stack)] == ["ollama", "open-webui"]
    assert "tools" in extra.problems(stack)


def test_a_name_a_core_service_or_another_project_has_is_refused(tmp_path: Path) -> None:
    webui = _project(tmp_path, "services:\n  webui:\n    image: docker.io/library/busybox\n", "o")
    found = extra.load(_stack(webui, project="open"), TARGET)
    assert "open-webui.container" in found.problems["open"]
    clash = "services:\n  x:\n    image: docker.io/library/busybox\n    container_name: ollama\n"
    found = extra.load(_stack(_project(tmp_path, clash, "c"), project="c"), TARGET)
    assert "container ollama" in found.problems["c"]
    one = _project(tmp_path, "services:\n  a-b:\n    image: docker.io/library/busybox\n", "p1")
    two = _project(tmp_path, "services:\n  b:\n    image: docker.io/library/busybox\n", "p2")
    stack = parse_config(
        f"stack:\n  extra:\n    - {{project: x, files: [{one}]}}\n"
        f"    - {{project: x-a, files: [{two}]}}\n"
    ).stack
    found = extra.load(stack, TARGET)
    assert [p.project for p in found.projects] == ["x"]
    assert "x-a-b.container" in found.problems["x-a"] and "project x" in found.problems["x-a"]


def test_lossy_and_broken_projects_are_named(tmp_path: Path) -> None:
    lossy = TOOLS.replace(
        "    restart: unless-stopped\n    healthcheck",
        "    restart: unless-stopped\n    develop: {}\n    healthcheck",
        1,
    )
    found = extra.load(_stack(_project(tmp_path, lossy)), TARGET)
    assert "allow_lossy" in found.problems["tools"] and "develop" in found.problems["tools"]
    allowed = parse_config(
        f"stack:\n  extra:\n    - {{project: tools, files: [{tmp_path / 'tools/compose.yaml'}], "
        "allow_lossy: true}\n"
    ).stack
    assert extra.load(allowed, TARGET).problems == {}
    broken = _project(tmp_path, "services:\n  web:\n    imgae: x\n", "broken")
    found = extra.load(_stack(broken, project="broken"), TARGET)
    assert str(broken) in found.problems["broken"] and "imgae" in found.problems["broken"]


def test_files_the_agent_cannot_read_are_refused_by_name() -> None:
    stack = parse_config(
        "stack:\n  extra:\n    - {project: t, files: [/home/me/compose.yaml]}\n"
    ).stack
    assert "ProtectHome" in extra.load(stack, TARGET).problems["t"]


def test_config_errors_name_the_list_item() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("stack:\n  extra:\n    - {project: a, files: [/x]}\n"
                     "    - {project: b, files: [x.yaml], typo: 1}\n")  # fmt: skip
    assert (
        "stack.extra[1].files[0]: must be an absolute path (got 'x.yaml')" in caught.value.problems
    )
    assert any(p.startswith("stack.extra[1].typo: unknown key") for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        parse_config("stack:\n  extra:\n    - {project: a, files: [/x]}\n"
                     "    - {project: a, files: [/y]}\n")  # fmt: skip
    assert caught.value.problems == ["stack.extra[1].project: 'a' is already stack.extra[0]"]


def test_render_and_plan_add_the_extras_and_stop_them_when_dropped(tmp_path: Path) -> None:
    stack = _stack(_project(tmp_path))
    rendered = _render(stack)
    assert rendered.services[-3:] == ("tools-init", "tools-web", "tools-worker")
    assert {"tools-web.container", "tools.network", "tools-data.volume"} <= set(rendered.files)
    fresh = plan(rendered, UNIT_DIR, {}, {})
    assert [s.service for s in fresh.start][-3:] == ["tools-init", "tools-web", "tools-worker"]

    installed = planned(rendered, UNIT_DIR)
    stray = UNIT_DIR / "left-over.container"
    core = render(parse_config("").stack, FACTS)
    active = {unit_of(n): "active" for n in rendered.services}
    todo = plan(core, UNIT_DIR, {**installed, stray: "[Container]\n"}, active)
    # the extras stop first (the importer's header marks them); the stray file only goes
    assert todo.stop == ("tools-worker", "tools-web", "tools-init")
    assert {UNIT_DIR / "tools-web.container", UNIT_DIR / "tools.network", stray} <= set(todo.remove)
    assert [s.service for s in todo.start] == [] and todo.daemon_reload


def test_the_catalogue_follows_an_edited_compose_file(tmp_path: Path) -> None:
    path = _project(tmp_path)
    stack = _stack(path)
    assert "tools-worker" in [m.name for m in extra.members(stack)]
    st = os.stat(path)
    path.write_text(TOOLS.replace("  worker:", "  helper:"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    names = [m.name for m in extra.members(stack)]
    assert "tools-helper" in names and "tools-worker" not in names
    path.write_text("services: [")  # stops loading: left out, named; the core goes on
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert [m.name for m in extra.members(stack)][-1] == "open-webui"
    assert "tools" in extra.problems(stack)


def _view(name: str, **fields: object) -> ServiceView:
    return ServiceView(unit=unit_of(name), **fields)  # type: ignore[arg-type]


def test_the_healer_waits_for_a_core_dependency_of_an_extra() -> None:
    services = {
        "postgres": _view("postgres", active_state="failed", result="exit-code"),
        "tools-worker": _view(
            "tools-worker",
            active_state="failed",
            result="exit-code",
            requires=("postgres",),
            project="tools",
        ),
    }
    snap = SourceSnapshot("stack", SourceState.DEGRADED, "x", StackView(freeze_map(services)))
    deps = dependencies({"stack": snap})
    assert deps == {"postgres": (), "tools-worker": ("postgres",)}
    obs = {n: Observation(active_state="failed", result="exit-code") for n in services}
    actions, states = decide(HealConfig(), obs, {}, 1000.0, lambda: 0.5, deps)
    assert [a.service for a in actions] == ["postgres"]
    assert states["tools-worker"].status == "waiting-for-dependency"
    assert states["tools-worker"].waiting_for == ("postgres",)


def test_a_finished_one_shot_is_not_a_problem() -> None:
    done = _view("tools-init", active_state="active", sub_state="exited",
                 container_state="absent", oneshot=True)  # fmt: skip
    assert describe(done) is None
    service = _view("tools-web", active_state="active", sub_state="running",
                    container_state="absent")  # fmt: skip
    assert describe(service) == "container absent"
    obs = {"tools-init": Observation(active_state="active", sub_state="exited")}
    actions, _ = decide(HealConfig(), obs, {}, 1000.0, lambda: 0.5, {})
    assert actions == []
