"""Compose import checked by the real quadlet generator in the testbed guest.

Every golden of tests/compose/fixtures goes through
`podman-system-generator --dryrun` (Podman 5.4 in the guest): it must accept every unit,
and for the quoting fixtures the ExecStart= it generates must hand podman exactly the
compose values. Then one converted project is started for real: a service_healthy
dependency (Notify=healthy), a service_completed_successfully one-shot and the project
network with service-name DNS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.compose.cli import import_compose
from agent.quadlet import PodmanVersion
from tests.compose.golden import ROUNDTRIP, Case, argv_problems, cases, service_exec_starts
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

GENERATOR = "/usr/lib/systemd/system-generators/podman-system-generator"
CASES = cases()


def _guest_podman(guest: Guest) -> PodmanVersion:
    out = guest.run(["podman", "--version"]).stdout
    version = PodmanVersion.from_podman_output(out)
    assert version, out
    return version


def _dryrun(guest: Guest, case: Case) -> tuple[int, str, str]:
    unit_dir = f"/tmp/compose-dryrun/{case.name}"
    guest.run(["rm", "-rf", unit_dir])
    guest.run(["mkdir", "-p", unit_dir])
    for path in sorted(case.expected.iterdir()):
        if path.name != "report.txt":
            guest.write_file(f"{unit_dir}/{path.name}", path.read_bytes())
    res = guest.run(["env", f"QUADLET_UNIT_DIRS={unit_dir}", GENERATOR, "--dryrun"], check=False)
    guest.run(["rm", "-rf", unit_dir])
    return res.returncode, str(res.stdout), str(res.stderr)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_units_pass_the_generator_dryrun(session_guest: Guest, case: Case) -> None:
    if case.target > _guest_podman(session_guest):
        pytest.skip(f"the fixture targets Podman {case.target}, newer than the guest's")
    rc, out, err = _dryrun(session_guest, case)
    assert rc == 0, err
    assert "converting" not in err and "unsupported" not in err, err
    for path in case.expected.iterdir():
        if path.name == "report.txt":
            continue
        stem, kind = path.name.rsplit(".", 1)
        service = stem if kind == "container" else f"{stem}-{kind}"
        assert f"---{service}.service---" in out, (path.name, err)


@pytest.mark.parametrize("name", sorted(ROUNDTRIP))
def test_values_reach_podman_unchanged(session_guest: Guest, name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    rc, out, err = _dryrun(session_guest, case)
    assert rc == 0, err
    starts = service_exec_starts(out)
    for service, expected in ROUNDTRIP[name].items():
        assert argv_problems(starts[service], expected) == []


PROJECT = """\
name: e2e-compose
services:
  api:
    image: {ollama}
    healthcheck:
      test: ["CMD", "ollama", "list"]
      interval: 1s
      timeout: 5s
      retries: 30
  migrate:
    image: {ollama}
    entrypoint: ["/bin/sh", "-c"]
    command: ["echo migrated && touch /tmp/done"]
  web:
    image: {webui}
    environment:
      OLLAMA_BASE_URL: http://api:11434
    depends_on:
      api:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    restart: unless-stopped
"""


def test_converted_project_starts_in_dependency_order(
    guest: Guest, standin_images: dict[str, str], tmp_path: Path
) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        PROJECT.format(ollama=standin_images["ollama"], webui=standin_images["open-webui"])
    )
    result = import_compose([compose], environ={"HOME": "/root"}, target=_guest_podman(guest))
    assert result.report.lossy == []
    for unit in result.units:
        guest.write_quadlet(unit.name, unit.render())
    guest.daemon_reload()

    guest.start("e2e-compose-web.service", timeout=180)  # pulls in api (healthy) and migrate
    for unit in ("e2e-compose-network.service", "e2e-compose-api.service",
                 "e2e-compose-migrate.service", "e2e-compose-web.service"):  # fmt: skip
        guest.wait_unit(unit, "active", timeout=60)
    health = guest.podman("inspect", "e2e-compose-api", "--format", "{{.State.Health.Status}}")
    assert health.strip() == "healthy"
    migrate = guest.unit_properties(
        "e2e-compose-migrate.service", "Type", "Result", "ExecMainStatus"
    )
    assert migrate == {"Type": "oneshot", "Result": "success", "ExecMainStatus": "0"}
    nets = guest.podman(
        "inspect",
        "e2e-compose-web",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    )
    assert nets.split() == ["e2e-compose_default"]
    # The service name resolves on the project network (alias), as under Compose.
    body = guest.podman("exec", "e2e-compose-web", "curl", "-fsS", "http://api:11434/api/version")
    assert re.search(r'"version"', body), body
    env = guest.podman("exec", "e2e-compose-web", "sh", "-c", 'echo "$OLLAMA_BASE_URL"')
    assert env.strip() == "http://api:11434"


BUILT = """\
name: e2e-built
services:
  app:
    build: ./app
  gw:
    image: localgw:staging
    build:
      context: ./gw
      dockerfile: Containerfile.prod
      args:
        GREETING: hello
  web:
    image: {ollama}
    depends_on: [app, gw]
"""


def test_built_services_are_built_by_build_units_then_run(
    guest: Guest, standin_images: dict[str, str], tmp_path: Path
) -> None:
    """A build-only service and a build with a short image name: `.build` units build
    them (offline: FROM a local image), the containers run what was built, and the
    short name is the local image (localhost/), never Docker Hub's."""
    project = tmp_path / "e2e-built"
    (project / "app").mkdir(parents=True)
    (project / "gw").mkdir()
    base = standin_images["ollama"]
    (project / "app" / "Containerfile").write_text(f"FROM {base}\nLABEL built=app\n")
    (project / "gw" / "Containerfile.prod").write_text(
        f"FROM {base}\nARG GREETING\nLABEL greeting=$GREETING\n"
    )
    (project / "compose.yaml").write_text(BUILT.format(ollama=base))
    result = import_compose(
        [project / "compose.yaml"], environ={"HOME": "/root"}, target=_guest_podman(guest)
    )
    assert result.report.lossy == []
    assert {u.name for u in result.units} >= {"e2e-built-app.build", "e2e-built-gw.build"}
    guest.copy_in(project, str(project))
    for unit in result.units:
        guest.write_quadlet(unit.name, unit.render())
    guest.daemon_reload()
    try:
        guest.start("e2e-built-web.service", timeout=600)  # builds app and gw first
        for unit in ("e2e-built-app.service", "e2e-built-gw.service", "e2e-built-web.service"):
            guest.wait_unit(unit, "active", timeout=120)
        label = guest.podman("image", "inspect", "localhost/localgw:staging",
                             "--format", "{{index .Labels \"greeting\"}}")  # fmt: skip
        assert label.strip() == "hello"
        image = guest.podman("inspect", "e2e-built-app", "--format", "{{.ImageName}}")
        assert image.strip() == "localhost/e2e-built-app:latest"
    finally:
        guest.run(["podman", "rmi", "-f", "localhost/localgw:staging",
                   "localhost/e2e-built-app:latest"], check=False)  # fmt: skip
