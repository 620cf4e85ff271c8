"""`aistack import-compose` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from agent.cli import main
from agent.compose import cli as compose_cli
from agent.quadlet import PodmanVersion
from tests.compose.golden import FIXTURES, INVALID

SEED = FIXTURES / "01-seed-ai-stack"
LOSSY = FIXTURES / "32-lossy"


@pytest.fixture(autouse=True)
def _clean_compose_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the real environment; variables a developer may have set must not leak."""
    for name in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "TAG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the seed fixture (its goldens removed), so outputs land in tmp."""
    target = tmp_path / "stack"
    shutil.copytree(SEED, target, ignore=shutil.ignore_patterns("expected"))
    return target


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["import-compose", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "import-compose" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["import-compose", "--help"])
    help_text = capsys.readouterr().out
    for option in (
        "-f",
        "-o",
        "--podman-version",
        "--profile",
        "--env-file",
        "--allow-lossy",
        "--stack-config",
        "--json",
        "65",
    ):
        assert option in help_text


def test_prints_units_with_separators(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["-f", str(project / "docker-compose.yml"), "--podman-version", "5.0"], capsys
    )
    assert code == 0
    names = [line[4:-4] for line in out.splitlines() if line.startswith("==> ")]
    assert names == [
        "db.container",
        "litellm.container",
        "ollama.container",
        "open-webui.container",
    ]
    assert "ContainerName=postgres" in out
    assert "target Podman 5.0" in err and "systemctl daemon-reload" in err


def test_writes_units_atomically_to_a_directory(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "units" / "nested"
    code, out, err = run(
        ["-f", str(project / "docker-compose.yml"), "-o", str(out_dir), "--podman-version", "5.0"],
        capsys,
    )
    assert code == 0 and out == ""
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == [
        "db.container",
        "litellm.container",
        "ollama.container",
        "open-webui.container",
    ]
    golden = (SEED / "expected" / "db.container").read_text()
    assert (out_dir / "db.container").read_text() == golden.replace(
        "/srv/01-seed-ai-stack", str(project)
    ).replace("'01-seed-ai-stack'", "'stack'").replace(
        "(01-seed-ai-stack compose", "(stack compose"
    )
    assert stat.S_IMODE((out_dir / "db.container").stat().st_mode) == 0o644
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]
    assert f"wrote 4 files to {out_dir}" in err


def test_lossy_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code, _, err = run(
        ["-f", str(LOSSY / "compose.yaml"), "-o", str(out_dir), "--podman-version", "5.0"], capsys
    )
    assert code == 2
    assert not out_dir.exists()
    assert "built: build: images are not built" in err
    assert "nothing was written" in err and "--allow-lossy" in err


def test_allow_lossy_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code, _, err = run(
        [
            "-f",
            str(LOSSY / "compose.yaml"),
            "-o",
            str(out_dir),
            "--allow-lossy",
            "--podman-version",
            "5.0",
        ],
        capsys,
    )
    assert code == 0
    assert (out_dir / "built.container").is_file()
    assert "not converted (lossy)" in err


def test_json_result(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["-f", str(LOSSY / "compose.yaml"), "--json", "--podman-version", "5.0"], capsys
    )
    doc = json.loads(out)
    assert code == 2 and doc["exit_code"] == 2
    assert doc["target_podman"] == "5.0" and doc["target_source"] == "option"
    assert doc["written"] == []
    assert {"service": "cache", "key": "domainname", "why": "Podman has no --domainname"} in doc[
        "lossy"
    ]
    assert {u["name"] for u in doc["units"]} >= {"built.container", "cache.container"}


def test_malformed_input_exits_65_naming_file_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    bad = INVALID / "unknown-service-key" / "compose.yaml"
    code, out, err = run(["-f", str(bad)], capsys)
    assert code == 65 and out == ""
    assert f"{bad}: services.web.imgae: unknown key 'imgae' (did you mean 'image'?)" in err
    code, out, _ = run(["-f", str(bad), "--json"], capsys)
    assert code == 65
    assert json.loads(out)["error"] == {
        "file": str(bad),
        "path": "services.web.imgae",
        "message": "unknown key 'imgae' (did you mean 'image'?)",
    }


def test_bad_podman_version_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("five", "4.3"):
        with pytest.raises(SystemExit) as exit_:
            main(["import-compose", "--podman-version", bad])
        assert exit_.value.code == 2
    assert "quadlet needs Podman 4.4" in capsys.readouterr().err


def test_default_target_is_the_host_podman_else_5_0(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = str(project / "docker-compose.yml")
    monkeypatch.setattr(compose_cli, "host_podman_version", lambda: PodmanVersion(4, 9))
    code, _, err = run(["-f", file], capsys)
    assert code == 0 and "target Podman 4.9 (found on this host)" in err
    monkeypatch.setattr(compose_cli, "host_podman_version", lambda: None)
    code, _, err = run(["-f", file], capsys)
    assert code == 0 and "target Podman 5.0 (default; no podman found here)" in err


def test_host_podman_version_reads_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'podman version 4.9.3'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compose_cli.host_podman_version() == PodmanVersion(4, 9)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert compose_cli.host_podman_version() is None


def test_default_files_and_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    (tmp_path / "compose.override.yaml").write_text(
        "services:\n  web:\n    environment: {FROM: override}\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["--podman-version", "5.0"], capsys)
    assert code == 0 and "Environment=FROM=override" in out
    monkeypatch.setenv("COMPOSE_FILE", "compose.yaml")
    code, out, _ = run(["--podman-version", "5.0"], capsys)
    assert code == 0 and "FROM=override" not in out
    monkeypatch.delenv("COMPOSE_FILE")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    code, _, err = run(["--podman-version", "5.0"], capsys)
    assert code == 65 and "no compose file here" in err


def test_profile_env_file_and_project_name_options(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "28-env-file-option"
    code, out, _ = run(
        [
            "-f",
            str(fixture / "compose.yaml"),
            "--podman-version",
            "5.0",
            "--profile",
            "batch",
            "-p",
            "shop",
        ],
        capsys,
    )
    assert code == 0
    assert "job.container" in out and "app.container" not in out
    assert "Image=ghcr.io/example/job:from-default-dotenv" in out
    code, out, _ = run(
        [
            "-f",
            str(fixture / "compose.yaml"),
            "--podman-version",
            "5.0",
            "--env-file",
            str(fixture / "prod.env"),
        ],
        capsys,
    )
    assert code == 0 and "Image=ghcr.io/example/app:2.0.0" in out and "shop_prod" in out
