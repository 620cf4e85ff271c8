"""The seed's compose file converts to units equivalent to the ones aistack ships.

The seed (/work/shared/seed/ai-stack.md, fixture 01-seed-ai-stack) is converted with
import-compose and compared with the managed stack rendered from the shipped templates
(units/, the default config; tests/stack/golden/default holds the same bytes) on what
matters: the same images, every service on one shared network on which the names the
services use resolve, the data volumes, the environment the seed sets (secrets as
secrets), the start order, and the GPU when the seed asks for one. The differences that
remain are intentional and listed in docs/import-compose.md ("The seed's stack").
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from agent.compose.stackconfig import is_secret
from agent.config import parse_config
from agent.stack.render import GpuKind, HostFacts, render
from tests.compose.seedstack import (
    MANAGED,
    P54,
    Container,
    containers_by_role,
    convert_seed,
    unit_texts,
)
from tests.conftest import REPO

ROLES = ("ollama", "open_webui", "litellm", "postgres")
DATA = {"ollama": "/root/.ollama", "open_webui": "/app/backend/data",
        "postgres": "/var/lib/postgresql/data", "litellm": "/app/config.yaml"}  # fmt: skip
# Open WebUI reads the seed's OLLAMA_API_BASE_URL under its current name OLLAMA_BASE_URL.
RENAMED = {"OLLAMA_API_BASE_URL": "OLLAMA_BASE_URL"}
_HOST_IN_URL = re.compile(r"://(?:[^/@\s]*@)?([A-Za-z0-9_.-]+):\d+")


def managed(gpu: GpuKind = "none") -> dict[str, Container]:
    rendered = render(parse_config("").stack, HostFacts(P54, 257, gpu), REPO / "units")
    return containers_by_role(dict(rendered.files))


def converted(*, gpu: bool = False) -> dict[str, Container]:
    result = convert_seed(gpu=gpu)
    assert result.report.lossy == []
    return containers_by_role(unit_texts(result))


def test_the_seed_has_the_four_services_of_the_managed_stack() -> None:
    assert sorted(converted()) == sorted(managed()) == sorted(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_same_images(role: str) -> None:
    assert converted()[role].image == managed()[role].image


@pytest.mark.parametrize("containers", [converted, managed], ids=["converted", "managed"])
def test_one_shared_network_on_which_the_names_in_use_resolve(
    containers: Callable[[], dict[str, Container]],
) -> None:
    boxes = containers()
    networks = {net for box in boxes.values() for net in box.networks}
    assert len(networks) == 1, networks  # proxy (the seed's), aistack (the managed one)
    shared = networks.pop()
    resolvable = {name for box in boxes.values() for name in box.networks[shared]}
    # Every host name the seed's services use for each other (its URLs) resolves.
    seed_env = [v for box in converted().values() for v in box.env.values()]
    used = {m for value in seed_env for m in _HOST_IN_URL.findall(value)}
    assert used == {"ollama", "db"}
    assert used <= resolvable, (used, resolvable)
    assert {"ollama", "open-webui", "litellm"} <= resolvable


@pytest.mark.parametrize("role", ROLES)
def test_the_data_volumes(role: str) -> None:
    assert DATA[role] in converted()[role].volume_targets
    assert DATA[role] in managed()[role].volume_targets


@pytest.mark.parametrize("role", ROLES)
def test_the_environment_the_seed_sets(role: str) -> None:
    seed, ours = converted()[role], managed()[role]
    for name, value in seed.env.items():
        if is_secret(name, value):
            assert name in ours.secret_targets, f"{role}: {name} is not a secret of the unit"
        else:
            assert ours.env.get(RENAMED.get(name, name)) == value, (role, name)
    # The env_file (.env: provider keys and LITELLM_MASTER_KEY): the managed stack sets
    # the master key from its secret; provider keys come with stack.litellm.provider_keys
    # (test_stack_config.py checks those).
    if seed.env_files:
        assert role == "litellm"
        assert "LITELLM_MASTER_KEY" in ours.secret_targets


def test_the_start_order() -> None:
    seed, ours = converted(), managed()
    stem = {b.unit.stem: role for role, b in seed.items()}  # compose service -> role

    def order(boxes: dict[str, Container], of: str, names: dict[str, str]) -> set[str]:
        stems = (u.removesuffix(".service") for u in boxes[of].after())
        return {names.get(s, s) for s in stems}

    seed_names = {s: MANAGED[r] for s, r in stem.items()}
    for of, deps in (("open_webui", {"ollama", "litellm"}), ("litellm", {"postgres"})):
        assert order(seed, of, seed_names) == deps
        assert order(ours, of, {}) == deps
        assert {u.removesuffix(".service") for u in ours[of].requires_or_wants()} == deps
    # The managed LiteLLM waits for PostgreSQL to be healthy; the seed only for it to run.
    assert ours["postgres"].get("Notify") == ["healthy"]
    assert seed["postgres"].get("Notify") == []


def test_the_gpu_when_the_seed_asks_for_one() -> None:
    assert converted()["ollama"].get("AddDevice") == []
    assert managed()["ollama"].get("AddDevice") == []
    seed, ours = converted(gpu=True)["ollama"], managed("nvidia")["ollama"]
    assert seed.get("AddDevice") == ours.get("AddDevice") == ["nvidia.com/gpu=all"]


def test_litellm_runs_the_same_command_with_its_config_mounted() -> None:
    seed, ours = converted()["litellm"], managed()["litellm"]
    assert seed.get("Exec") == ours.get("Exec") == ["--config /app/config.yaml --port 4000"]


def test_postgres_health_check_is_the_seeds_over_tcp() -> None:
    """The seed's check, asked over TCP: the image's init-time server listens on the
    socket only, and must not count as healthy (docs/import-compose.md, "health")."""
    seed, ours = converted()["postgres"], managed()["postgres"]
    assert seed.get("HealthCmd") == ["pg_isready -d litellm -U llmproxy"]
    assert ours.get("HealthCmd") == ["pg_isready -h 127.0.0.1 -d litellm -U llmproxy"]


def test_intentional_differences_are_documented() -> None:
    doc = (REPO / "docs" / "import-compose.md").read_text()
    section = doc.split("## The seed's stack", 1)[1].split("\n## ", 1)[0]
    for word in ("names", "loopback", "Podman secrets", "health", "OLLAMA_BASE_URL", "volume"):
        assert word in section, word
