"""The seed's stack two ways: converted by import-compose, and rendered by `aistack up`.

Helpers that read what matters out of a `.container` unit (image, environment, secrets,
networks and the names that resolve on them, volume targets, dependencies, devices),
so the tests can compare a converted unit with a rendered one on meaning, not bytes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from agent.compose.cli import ImportResult, import_compose
from agent.compose.stackconfig import role_of_image
from agent.quadlet import PodmanVersion, UnitFile
from tests.compose.golden import FIXTURES, HOME

SEED = FIXTURES / "01-seed-ai-stack"
SEED_GPU_OVERLAY = Path(__file__).resolve().parent / "seed-gpu-overlay.yml"
P54 = PodmanVersion(5, 4)
# The managed stack's unit stem for each stack: key.
MANAGED = {"ollama": "ollama", "open_webui": "open-webui", "litellm": "litellm",
           "postgres": "postgres"}  # fmt: skip


def convert_seed(
    directory: Path = SEED, *, gpu: bool = False, target: PodmanVersion = P54
) -> ImportResult:
    files = [directory / "docker-compose.yml"] + ([SEED_GPU_OVERLAY] if gpu else [])
    return import_compose(files, environ={"HOME": HOME}, target=target)


@dataclass
class Container:
    """What a `.container` unit means, as far as these comparisons care."""

    unit: UnitFile

    def get(self, key: str) -> list[str]:
        return self.unit.values("Container", key)

    @property
    def image(self) -> str:
        return self.get("Image")[0]

    @property
    def name(self) -> str:
        return self.get("ContainerName")[0]

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for value in self.get("Environment"):
            for word in shlex.split(value):
                name, _, val = word.partition("=")
                out[name] = val
        return out

    @property
    def env_files(self) -> list[str]:
        return self.get("EnvironmentFile")

    @property
    def secret_targets(self) -> set[str]:
        """Environment variables set from Podman secrets (Secret=...,type=env,target=X)."""
        out = set()
        for value in self.get("Secret"):
            opts = dict(o.partition("=")[::2] for o in value.split(",")[1:])
            if opts.get("type") == "env":
                out.add(opts.get("target") or value.split(",")[0])
        return out

    @property
    def networks(self) -> dict[str, set[str]]:
        """Network -> the names this container has on it (its name and aliases)."""
        aliases = set(self.get("NetworkAlias"))
        out: dict[str, set[str]] = {}
        for value in self.get("Network"):
            net, _, opts = value.partition(":")
            names = {self.name} | aliases
            names |= {o[len("alias=") :] for o in opts.split(",") if o.startswith("alias=")}
            out[net.removesuffix(".network")] = names
        return out

    @property
    def volume_targets(self) -> set[str]:
        return {v.split(":")[1] for v in self.get("Volume")}

    @property
    def labels(self) -> set[str]:
        return set(self.get("Label"))

    def after(self) -> set[str]:
        return {u for line in self.unit.values("Unit", "After") for u in line.split()}

    def requires_or_wants(self) -> set[str]:
        keys = ("Requires", "Wants")
        return {u for k in keys for line in self.unit.values("Unit", k) for u in line.split()}


def containers_by_role(files: dict[str, str]) -> dict[str, Container]:
    """stack: key -> container, recognising each unit by its image (not its name)."""
    out: dict[str, Container] = {}
    for name, text in files.items():
        if name.endswith(".container"):
            box = Container(UnitFile.parse(name, text))
            role = role_of_image(box.image)
            assert role is not None, box.image
            out[role] = box
    return out


def unit_texts(result: ImportResult) -> dict[str, str]:
    return {u.name: u.render() for u in result.units}
