"""`aistack import-compose --stack-config FILE`: the seed's stack as aistack's `stack:`.

The written YAML must be accepted by agent.config.parse_config and render through
agent.stack.render without errors, carry no secret of the compose project (they are
listed as to-dos instead), and render units that mean what the seed's own conversion
means, as far as the managed stack models it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from agent.cli import main
from agent.compose.stackconfig import is_secret, role_of_image
from agent.config import StackConfig, parse_config
from agent.stack.render import GpuKind, HostFacts, render
from tests.compose.golden import FIXTURES
from tests.compose.seedstack import (
    P54,
    SEED,
    SEED_GPU_OVERLAY,
    Container,
    containers_by_role,
    convert_seed,
    unit_texts,
)
from tests.conftest import REPO

SECRET_VALUES = ("dbpassword", "your-secret-key", "sk-", "postgresql://")


@pytest.fixture(autouse=True)
def _clean_compose_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    target = tmp_path / "open-webui-stack"
    shutil.copytree(SEED, target, ignore=shutil.ignore_patterns("expected"))
    return target


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["import-compose", "--podman-version", "5.4", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def stack_of(path: Path) -> StackConfig:
    return parse_config(path.read_text(), str(path)).stack


def rendered(stack: StackConfig, gpu: GpuKind = "none") -> dict[str, Container]:
    result = render(stack, HostFacts(P54, 257, gpu), REPO / "units")
    return containers_by_role(dict(result.files))


# --- the seed ------------------------------------------------------------------------


def test_seed_writes_a_stack_config_that_parses_and_renders(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stack.yaml"
    code, _, err = run(["-f", str(seed / "docker-compose.yml"), "--stack-config", str(out)], capsys)
    assert code == 0, err
    assert f"wrote the stack: config to {out}" in err
    stack = stack_of(out)
    for gpu in ("none", "nvidia"):
        render(stack, HostFacts(P54, 257, gpu), REPO / "units")  # type: ignore[arg-type]
    data = yaml.safe_load(out.read_text())["stack"]
    assert data["gpu"] == "none"
    assert (data["proxy"], data["proxy_network"]) == ("traefik", "proxy")
    assert data["ollama"] == {
        "image": "docker.io/ollama/ollama:latest",
        "env": {"OLLAMA_FLASH_ATTENTION": "true", "OLLAMA_KV_CACHE_TYPE": "f16"},
    }
    assert data["open_webui"] == {
        "image": "ghcr.io/open-webui/open-webui:main",
        "env": {"OLLAMA_API_BASE_URL": "http://ollama:11434"},
        "hostname": "ai.x1.example.com",
    }
    assert data["litellm"] == {
        "image": "ghcr.io/berriai/litellm-database:main-v1.63.6-nightly",
        "env": {"STORE_MODEL_IN_DB": "True"},
        "hostname": "llm.x1.example.com",
        "model_list": [
            {
                "model_name": "ollama-llama",
                "litellm_params": {"model": "ollama/llama3.2", "api_base": "http://ollama:11434"},
            }
        ],
        "provider_keys": ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"],
    }
    assert data["postgres"] == {
        "image": "docker.io/library/postgres:16",
        "database": "litellm",
        "user": "llmproxy",
    }


def test_seed_secrets_are_listed_never_copied(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stack.yaml"
    code, stdout, _ = run(
        ["-f", str(seed / "docker-compose.yml"), "--stack-config", str(out), "--json"], capsys
    )
    assert code == 0
    text = out.read_text()
    for value in SECRET_VALUES:
        assert value not in text
    result = json.loads(stdout)
    todo = result["stack_config"]["secrets_todo"]
    for name, where in (
        ("WEBUI_SECRET_KEY", "/etc/aistack/secrets/webui-secret-key"),
        ("POSTGRES_PASSWORD", "/etc/aistack/secrets/postgres-password"),
        ("LITELLM_MASTER_KEY", "/etc/aistack/secrets/litellm-master-key"),
        ("DATABASE_URL", "/etc/aistack/secrets/postgres-password"),
        ("OPENAI_API_KEY", "/etc/aistack/secrets/OPENAI_API_KEY"),
        ("ANTHROPIC_API_KEY", "/etc/aistack/secrets/ANTHROPIC_API_KEY"),
    ):
        line = next(t for t in todo if f" {name} " in t)
        assert where in line
        assert any(line in action for action in result["actions"])
        assert f"#   - {line}" in text  # and at the top of the file
    for action in result["actions"]:
        for value in SECRET_VALUES[:3]:
            assert value not in action
    assert result["stack_config"]["recognised"] is True
    assert result["stack_config"]["services"] == {
        "ollama": "ollama", "open_webui": "open-webui", "litellm": "litellm", "postgres": "db"
    }  # fmt: skip
    # The managed loopback default is kept where the seed publishes nothing: said so.
    notes = [n for n in result["notes"] if n["service"].startswith("stack.")]
    assert any(n["key"] == "ports" and "loopback" in n["why"] for n in notes)
    moved = [a for a in result["actions"] if "data is not moved" in a]
    assert len(moved) == 3 and all(str(seed) in a for a in moved)


def test_seed_stack_config_renders_what_the_seed_conversion_means(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stack.yaml"
    files = ["-f", str(seed / "docker-compose.yml"), "-f", str(SEED_GPU_OVERLAY)]
    assert run([*files, "--stack-config", str(out)], capsys)[0] == 0
    stack = stack_of(out)
    assert stack.gpu == "nvidia"
    ours = rendered(stack, "nvidia")
    theirs = containers_by_role(unit_texts(convert_seed(seed, gpu=True)))
    env_file = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY"}
    for role, seed_box in theirs.items():
        box = ours[role]
        assert box.image == seed_box.image
        for name, value in seed_box.env.items():
            if is_secret(name, value):
                assert name in box.secret_targets, (role, name)
            else:
                assert box.env[name] == value, (role, name)  # the seed's own name and value
        if seed_box.env_files:
            assert env_file <= box.secret_targets
        assert seed_box.labels <= box.labels, role  # Traefik: the same routers and hosts
        # Traefik's network (the seed's only one): the managed stack puts the proxied
        # services on it; all four share the stack's own network.
        assert ("proxy" in box.networks) is (role in ("open_webui", "litellm")), role
        assert "aistack" in box.networks
        assert seed_box.volume_targets <= box.volume_targets, role
        assert seed_box.get("AddDevice") == box.get("AddDevice"), role
        for key in ("Exec", "HealthCmd"):
            if seed_box.get(key) and role != "ollama":
                expected = list(seed_box.get(key) or ())
                if (role, key) == ("postgres", "HealthCmd"):  # over TCP: docs/import-compose.md
                    expected = [
                        c.replace("pg_isready", "pg_isready -h 127.0.0.1", 1) for c in expected
                    ]
                assert expected == box.get(key), (role, key)
    assert ours["ollama"].get("AddDevice") == ["nvidia.com/gpu=all"]


def test_seed_stack_config_lands_in_the_output_folder_when_asked(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    units = tmp_path / "units"
    target = tmp_path / "etc" / "aistack-stack.yaml"
    code, _, err = run(
        ["-f", str(seed / "docker-compose.yml"), "-o", str(units), "--stack-config", str(target)],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in units.iterdir()) == [
        "open-webui-stack-db.container", "open-webui-stack-litellm.container",
        "open-webui-stack-ollama.container", "open-webui-stack-open-webui.container",
    ]  # fmt: skip
    assert stack_of(target).litellm.provider_keys == ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


# --- other projects ------------------------------------------------------------------


def test_seed_gpu_variant_with_named_volumes_and_no_litellm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = FIXTURES / "36-version-key-and-seed-gpu"
    out = tmp_path / "stack.yaml"
    code, stdout, _ = run(
        ["-f", str(case / "compose.yaml"), "--stack-config", str(out), "--json"], capsys
    )
    assert code == 0
    stack = stack_of(out)
    assert stack.gpu == "nvidia" and stack.proxy == "none"
    assert not stack.litellm.enabled and not stack.postgres.enabled
    assert stack.open_webui.ports == ("127.0.0.1:3000",)
    assert stack.ollama.ports == ("127.0.0.1:11434",)  # compose publishes none: default
    assert rendered(stack, "nvidia")["ollama"].get("AddDevice") == ["nvidia.com/gpu=all"]
    actions = json.loads(stdout)["actions"]
    assert any(
        "36-version-key-and-seed-gpu_ollama" in a and "aistack-ollama-models" in a for a in actions
    )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


RENAMED = """\
services:
  llm:
    image: docker.io/ollama/ollama:0.5.7
    ports: ["11434:11434", "9999:9999"]
    environment: {OLLAMA_NUM_PARALLEL: "4", OLLAMA_DEBUG: "false"}
    gpus: all
  chat:
    image: ghcr.io/open-webui/open-webui:v0.5.20
    ports: ["127.0.0.1:3000:8080"]
    environment:
      OLLAMA_BASE_URL: http://llm:11434
      ENABLE_SIGNUP: "false"
      DEFAULT_USER_ROLE: user
      ENABLE_API_KEY: "true"
      OAUTH_CLIENT_SECRET: s3cr3t-oauth
    volumes: ["./extra:/app/backend/static:ro"]
  gateway:
    image: ghcr.io/berriai/litellm:main-latest
    command: ["--config", "/etc/litellm.yaml", "--port", "4000"]
    volumes: ["./litellm.yaml:/etc/litellm.yaml"]
    environment:
      DATABASE_URL: postgresql://proxy:pw@database:5432/spend
      GROQ_API_KEY: gsk-literal
      LITELLM_LOG: INFO
  database:
    image: postgres:17
    environment: {POSTGRES_USER: proxy, POSTGRES_PASSWORD: pw, POSTGRES_DB: spend}
    volumes: [pgdata:/var/lib/postgresql/data]
volumes:
  pgdata: {}
"""
LITELLM_YAML = """\
model_list:
  - model_name: local
    litellm_params: {model: ollama/llama3.2, api_base: "http://llm:11434"}
  - model_name: hosted gpt
    litellm_params: {model: openai/gpt-4o, api_key: sk-literal-key}
general_settings: {master_key: sk-1234}
"""


def test_recognised_by_image_not_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = _write(tmp_path / "p" / "compose.yaml", RENAMED)
    _write(tmp_path / "p" / "litellm.yaml", LITELLM_YAML)
    (tmp_path / "p" / "extra").mkdir()
    out = tmp_path / "stack.yaml"
    code, stdout, err = run(["-f", str(compose), "--stack-config", str(out), "--json"], capsys)
    assert code == 0, err
    text = out.read_text()
    for secret in ("s3cr3t-oauth", "gsk-literal", "sk-literal-key", "sk-1234", ":pw@"):
        assert secret not in text
    stack = stack_of(out)
    render(stack, HostFacts(P54, 257, "nvidia"), REPO / "units")
    assert stack.gpu == "nvidia"
    assert stack.ollama.image == "docker.io/ollama/ollama:0.5.7"
    assert stack.ollama.ports == ("0.0.0.0:11434",)
    assert stack.ollama.allow_remote  # carried as compose had it, and said (a note)
    assert "allow_remote: true" in err + stdout
    assert dict(stack.ollama.env) == {"OLLAMA_DEBUG": "false", "OLLAMA_NUM_PARALLEL": "4"}
    assert stack.open_webui.ports == ("127.0.0.1:3000",)
    assert dict(stack.open_webui.env) == {
        "DEFAULT_USER_ROLE": "user",
        "ENABLE_API_KEY": "true",  # a switch, not a secret
        "ENABLE_SIGNUP": "false",
        "OLLAMA_BASE_URL": "http://ollama:11434",  # llm is called ollama in the managed stack
    }
    assert stack.open_webui.volumes == (f"{tmp_path}/p/extra:/app/backend/static:ro",)
    assert dict(stack.litellm.env) == {"LITELLM_LOG": "INFO"}
    assert stack.litellm.provider_keys == ("GROQ_API_KEY", "MODEL_HOSTED_GPT_API_KEY")
    assert [m["litellm_params"] for m in stack.litellm.model_list] == [
        {"model": "ollama/llama3.2", "api_base": "http://ollama:11434"},
        {"model": "openai/gpt-4o", "api_key": "os.environ/MODEL_HOSTED_GPT_API_KEY"},
    ]
    assert (stack.postgres.database, stack.postgres.user) == ("spend", "proxy")
    assert stack.postgres.image == "docker.io/library/postgres:17"
    result = json.loads(stdout)
    notes = {(n["service"], n["key"]) for n in result["notes"]}
    assert ("stack.ollama", "ports[0]") in notes  # 0.0.0.0: said so
    assert ("stack.ollama", "ports[1]") in notes  # 9999 is not Ollama's port
    assert ("stack.litellm", "litellm.yaml: general_settings") in notes
    assert ("stack.postgres", "user") in notes  # backups.user must follow
    todo = result["stack_config"]["secrets_todo"]
    assert any("OAUTH_CLIENT_SECRET" in t and "not copied" in t for t in todo)
    assert any("/etc/aistack/secrets/MODEL_HOSTED_GPT_API_KEY" in t for t in todo)
    assert any("general_settings.master_key" in t and "litellm-master-key" in t for t in todo)


@pytest.mark.parametrize(
    ("fixture", "why"),
    [
        ("02-minimal", "this project has other services: web (image nginx)"),
        ("12-depends-on-healthy", "no ollama service"),
    ],
)
def test_not_the_seed_stack_writes_nothing(
    fixture: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = next((FIXTURES / fixture).glob("*compose.y*ml"))
    out = tmp_path / "stack.yaml"
    code, _, err = run(["-f", str(compose), "--stack-config", str(out)], capsys)
    assert code == 0
    assert not out.exists()
    assert f"nothing written to {out}: the project is not the seed's AI stack" in err
    assert why in err


@pytest.mark.parametrize(
    ("services", "why"),
    [
        (
            {"a": "ollama/ollama", "b": "ollama/ollama", "c": "ghcr.io/open-webui/open-webui"},
            "2 services use the ollama image (a, b)",
        ),
        (
            {"a": "ollama/ollama", "b": "ghcr.io/open-webui/open-webui", "c": "berriai/litellm"},
            "a litellm service without postgres",
        ),
        ({"a": "ollama/ollama"}, "no open-webui service"),
    ],
)
def test_not_the_seed_stack_json(
    services: dict[str, str], why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = _write(
        tmp_path / "p" / "compose.yaml",
        yaml.safe_dump({"services": {n: {"image": i} for n, i in services.items()}}),
    )
    out = tmp_path / "stack.yaml"
    code, stdout, _ = run(["-f", str(compose), "--stack-config", str(out), "--json"], capsys)
    assert code == 0 and not out.exists()
    result = json.loads(stdout)["stack_config"]
    assert result["recognised"] is False and result["written"] is None
    assert why in result["why_not"]


def test_lossy_import_writes_no_stack_config_either(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = _write(tmp_path / "lossy.yml", "services:\n  ollama:\n    scale: 2\n")
    out = tmp_path / "stack.yaml"
    code, _, _ = run(
        ["-f", str(seed / "docker-compose.yml"), "-f", str(overlay), "--stack-config", str(out)],
        capsys,
    )
    assert code == 2 and not out.exists()


def test_no_stack_config_without_the_option(seed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["-f", str(seed / "docker-compose.yml"), "--json"], capsys)
    result = json.loads(stdout)
    assert code == 0 and "stack_config" not in result
    assert not any(n["service"].startswith("stack.") for n in result["notes"])


@pytest.mark.parametrize(
    ("image", "role"),
    [
        ("ollama/ollama", "ollama"),
        ("docker.io/ollama/ollama:rocm", "ollama"),
        ("ghcr.io/open-webui/open-webui:cuda", "open_webui"),
        ("ghcr.io/berriai/litellm-database:main-v1.63.6-nightly", "litellm"),
        ("berriai/litellm:main-latest", "litellm"),
        ("postgres", "postgres"),
        ("docker.io/library/postgres:16-alpine", "postgres"),
        ("registry.example.com:5000/postgres:16", "postgres"),
        ("pgvector/pgvector:pg16", None),
        ("localhost/aistack-test/ollama:1", None),
        ("nginx", None),
    ],
)
def test_role_of_image(image: str, role: str | None) -> None:
    assert role_of_image(image) == role


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("WEBUI_SECRET_KEY", "x", True),
        ("POSTGRES_PASSWORD", "dbpassword", True),
        ("OPENAI_API_KEY", "sk-...", True),
        ("HF_TOKEN", "hf_abc", True),
        ("DATABASE_URL", "postgresql://u:p@db:5432/x", True),
        ("ENABLE_API_KEY", "true", False),
        ("OLLAMA_KV_CACHE_TYPE", "f16", False),
        ("OLLAMA_KEEP_ALIVE", "5m", False),
        ("OLLAMA_API_BASE_URL", "http://ollama:11434", False),
        ("STORE_MODEL_IN_DB", "True", False),
    ],
)
def test_is_secret(name: str, value: str, secret: bool) -> None:
    assert is_secret(name, value) is secret
