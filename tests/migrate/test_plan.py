"""The parts of migrate that decide without a host: the config it writes, the checks'
verdicts, the journal, and what the compose project hands over (secrets by value)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.compose.cli import import_compose
from agent.compose.stackconfig import stack_config
from agent.config import ConfigError, load_config
from agent.migrate import checks
from agent.migrate.run import Options, desired_config
from agent.migrate.source import OldStack, from_project
from agent.migrate.state import State, StateError
from tests.compose.golden import FIXTURES

SEED = FIXTURES / "01-seed-ai-stack"


def _seed(tmp_path: Path) -> OldStack:
    imported = import_compose([SEED / "docker-compose.yml"], environ={"HOME": "/root"})
    stack = stack_config(imported.project, imported.report)
    return from_project(imported.project, stack, tmp_path / "no-podman.sock")


def test_the_seed_hands_over_its_secrets_by_value_and_its_data_folders(tmp_path: Path) -> None:
    old = _seed(tmp_path)
    assert old.secrets["postgres-password"] == "dbpassword"
    assert old.secrets["webui-secret-key"] == "your-secret-key"
    assert old.secrets["litellm-master-key"] == "sk-..."  # the seed's .env
    assert old.secrets["OPENAI_API_KEY"] == "sk-..." and "ANTHROPIC_API_KEY" in old.secrets
    assert old.missing_secrets == []
    assert {r: d.path for r, d in old.data.items()} == {
        "ollama": SEED / "ollama",
        "open_webui": SEED / "open-webui",
        "postgres": SEED / "db",
    }
    assert old.containers["postgres"].names[0] == "postgres"
    assert old.postgres == ("litellm", "llmproxy")
    assert "dbpassword" not in repr(old)  # never in a log line or a traceback


def test_the_written_config_keeps_the_rest_of_the_file_and_is_valid(tmp_path: Path) -> None:
    old = _seed(tmp_path)
    current = ("# my settings\napi:\n  port: 9201  # mine\n\n# the old stack section\n"
               "stack:\n  gpu: none\n  ollama:\n    enabled: false\n# backups below\n"
               "backups:\n  keep_last: 3\n")  # fmt: skip
    text = desired_config(old, Options(mode="in-place"), current)
    assert text.startswith("# my settings\napi:\n  port: 9201  # mine\n")
    assert "# backups below\nbackups:\n  keep_last: 3\n" in text
    assert re.findall(r"^stack:", text, re.M) == ["stack:"] and "dbpassword" not in text
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    config = load_config(path, must_exist=True)
    assert config.api.port == 9201 and config.backups.keep_last == 3
    assert config.stack.postgres.data == str(SEED / "db")
    assert config.stack.ollama.enabled and config.stack.litellm.provider_keys
    # again over its own output: the same text (a rerun changes nothing)
    assert desired_config(old, Options(mode="in-place"), text) == text
    # copy mode: no data folders in the config
    assert "data:" not in desired_config(old, Options(mode="copy"), "")


@pytest.mark.parametrize("bad", ["relative/dir", "/a:b", "/x,y", "/", "/a/../etc"])
def test_data_must_be_a_plain_absolute_folder(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps({"stack": {"postgres": {"data": bad}}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, must_exist=True)
    assert "stack.postgres.data" in str(err.value.problems)


@pytest.mark.parametrize(("image", "env", "major"), [
    ("docker.io/library/postgres:16", None, 16),
    ("postgres:16.4-bookworm", None, 16),
    ("postgres:17-alpine", None, 17),
    ("localhost/aistack-test/postgres:abc123", {"PG_MAJOR": "17"}, 17),
    ("postgres@sha256:" + "a" * 64, None, None),
    ("registry:5000/postgres", None, None),
])  # fmt: skip
def test_the_image_major(image: str, env: dict[str, str] | None, major: int | None) -> None:
    assert checks.pg_major_of_image(image, env) == major


def test_a_major_mismatch_is_refused_with_both_fixes(tmp_path: Path) -> None:
    old = _seed(tmp_path)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "PG_VERSION").write_text("15\n")
    old.data["postgres"] = old.data["postgres"].__class__(
        "postgres", "db", tmp_path / "db", "aistack-postgres-data"
    )
    found = checks.Findings()
    checks.check_postgres(old, None, found, pg_upgrade=False)
    assert len(found.refusals) == 1
    assert "PostgreSQL 15 (PG_VERSION)" in found.refusals[0] and "runs 16" in found.refusals[0]
    assert "postgres:15" in found.refusals[0] and "--pg-upgrade" in found.refusals[0]
    (tmp_path / "db" / "PG_VERSION").write_text("16\n")
    found = checks.Findings()
    checks.check_postgres(old, None, found, pg_upgrade=False)
    assert found.refusals == []


def test_disk_is_refused_when_the_copy_does_not_fit(tmp_path: Path) -> None:
    old = _seed(tmp_path)
    sparse = tmp_path / "ollama"
    sparse.mkdir()
    with open(sparse / "blob", "wb") as f:
        f.truncate(1 << 42)  # 4 TiB, sparse: what the copy would write
    old.data["ollama"] = old.data["ollama"].__class__("ollama", "ollama", sparse, "v")
    found = checks.Findings()
    checks.check_disk(old, tmp_path / "volumes", found, {})
    assert found.refusals and "not enough disk" in found.refusals[0]
    assert "--data in-place" in found.refusals[0]
    found = checks.Findings()  # already copied (a resumed copy) counts
    checks.check_disk(old, tmp_path / "volumes", found, {"ollama": 1 << 42})
    assert found.refusals == []


def test_the_journal_survives_a_reload_and_refuses_junk(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = State(path, ["/p/docker-compose.yml"], "p", "copy")
    state.finish("check")
    state.finish("quiesce")
    again = State.load(path)
    assert again is not None and again.next_step() == "backup" and again.project == "p"
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("[1, 2]")
    with pytest.raises(StateError, match="not a migrate journal"):
        State.load(path)
    assert State.load(tmp_path / "none.json") is None


def test_a_secret_name_from_the_project_that_is_no_file_name_is_refused(tmp_path: Path) -> None:
    """LiteLLM's config names the key of a literal secret; it becomes a file name in
    /etc/aistack/secrets, so `../` there is refused before anything happens."""
    import shutil

    from agent.migrate.run import Migration
    from agent.migrate.state import State

    project = tmp_path / "stack"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns("expected"))
    (project / "config.yml").write_text(
        "model_list:\n  - model_name: evil\n    litellm_params:\n"
        "      model: openai/gpt-4o\n      ../../../etc/cron.d/x_key: sk-literal\n"
    )
    imported = import_compose([project / "docker-compose.yml"], environ={"HOME": "/root"})
    old = from_project(imported.project, stack_config(imported.project, imported.report),
                       tmp_path / "no-podman.sock")  # fmt: skip
    options = Options(config_path=tmp_path / "agent.yaml", socket=tmp_path / "no-podman.sock")
    found = Migration(old, options, State(tmp_path / "s.json"), None, print).findings()  # type: ignore[arg-type]
    assert any("not a plain file name" in r and "../" in r for r in found.refusals), found
    assert any(r.startswith("Podman: ") for r in found.refusals)  # and no Podman: refused too
    assert not (tmp_path / "s.json").exists()
