"""The seed's compose file, converted by import-compose, runs under systemd in the guest.

The seed (/work/shared/seed/ai-stack.md, fixture 01-seed-ai-stack) is converted as a
user would run it, with an overlay (`-f`) that only swaps the images for the testbed's
stand-ins (README.md: the LiteLLM stand-in takes the seed's `--config ... --port 4000`;
PostgreSQL is a real PostgreSQL 17). The units go into the guest's
/etc/containers/systemd, the project directory (its .env, config.yml and the bind-mount
directories) is copied to the same path in the guest, and starting its open-webui unit
must bring all four up, on the seed's external `proxy` network where the names the
seed uses (ollama, db) resolve.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from agent.compose.cli import import_compose
from agent.quadlet import PodmanVersion
from tests.compose.golden import FIXTURES
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

SEED = FIXTURES / "01-seed-ai-stack"
SERVICES = ("db", "ollama", "litellm", "open-webui")
UNIT = "open-webui-stack"  # units are named <project>-<service>


def _guest_podman(guest: Guest) -> PodmanVersion:
    version = PodmanVersion.from_podman_output(guest.run(["podman", "--version"]).stdout)
    assert version
    return version


def test_seed_converted_starts_under_systemd(
    guest: Guest, standin_images: dict[str, str], postgres_image: str, tmp_path: Path
) -> None:
    project = tmp_path / "open-webui-stack"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns("expected"))
    for directory in ("ollama", "open-webui", "db"):  # empty, as for a new stack
        shutil.rmtree(project / directory, ignore_errors=True)  # (the fixture's .gitkeep)
        (project / directory).mkdir()
    overlay = project / "testbed.override.yml"
    images = {
        "ollama": standin_images["ollama"],
        "open-webui": standin_images["open-webui"],
        "litellm": standin_images["litellm"],
        "db": postgres_image,
    }
    overlay.write_text(yaml.safe_dump({"services": {s: {"image": i} for s, i in images.items()}}))

    result = import_compose(
        [project / "docker-compose.yml", overlay],
        environ={"HOME": "/root"},
        target=_guest_podman(guest),
    )
    assert result.report.lossy == []
    assert sorted(u.name for u in result.units) == sorted(f"{UNIT}-{s}.container" for s in SERVICES)
    guest.copy_in(project, str(project))  # the units' bind mounts and env file, same paths
    guest.podman("network", "create", "proxy")  # the seed's external network (its to-do)
    for unit in result.units:
        guest.write_quadlet(unit.name, unit.render())
    guest.daemon_reload()

    guest.start(f"{UNIT}-open-webui.service", timeout=300)  # pulls in ollama, litellm, db
    for service in SERVICES:
        guest.wait_unit(f"{UNIT}-{service}.service", "active", timeout=120)

    # Container names as the seed's container_name; all on the seed's proxy network.
    for name in ("postgres", "ollama", "litellm", "open-webui"):
        nets = guest.podman(
            "inspect",
            name,
            "--format",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        )
        assert nets.split() == ["proxy"], (name, nets)
    # Open WebUI reaches Ollama by the name the seed uses.
    body = guest.podman("exec", "open-webui", "curl", "-fsS", "http://ollama:11434/api/version")
    assert '"version"' in body, body
    env = guest.podman("exec", "open-webui", "sh", "-c", 'echo "$OLLAMA_API_BASE_URL"')
    assert env.strip() == "http://ollama:11434"
    # PostgreSQL passes the seed's own health check, and LiteLLM reaches it as db:5432
    # (the seed's DATABASE_URL); LiteLLM got the env_file's variables too.
    guest.wait_for(
        "postgres healthy",
        lambda: (
            guest.podman("inspect", "postgres", "--format", "{{.State.Health.Status}}").strip()
            == "healthy"
        ),
        timeout=60,
    )

    def litellm_db() -> bool:
        out = guest.podman(
            "exec", "litellm", "wget", "-q", "-O", "-", "http://127.0.0.1:4000/health/readiness",
            check=False,
        )  # fmt: skip
        try:
            return bool(json.loads(out).get("db") == "connected")
        except ValueError:
            return False

    guest.wait_for("LiteLLM connected to db:5432", litellm_db, timeout=60)
    master = guest.podman("exec", "litellm", "sh", "-c", 'echo "$LITELLM_MASTER_KEY"')
    assert master.strip() == "sk-..."
    # The data lands where the seed keeps it (its bind-mount directories).
    guest.wait_for(
        "PostgreSQL's files in ./db",
        lambda: guest.run(["test", "-e", f"{project}/db/PG_VERSION"], check=False).returncode == 0,
        timeout=30,
    )
