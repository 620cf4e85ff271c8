"""`aistack import-compose` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from agent.cli import main
from agent.compose import cli as compose_cli
from agent.config import parse_config
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
        "stack-db.container",
        "stack-litellm.container",
        "stack-ollama.container",
        "stack-open-webui.container",
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
        "stack-db.container",
        "stack-litellm.container",
        "stack-ollama.container",
        "stack-open-webui.container",
    ]
    golden = (SEED / "expected" / "01-seed-ai-stack-db.container").read_text()
    assert (out_dir / "stack-db.container").read_text() == golden.replace(
        "/srv/01-seed-ai-stack", str(project)
    ).replace("'01-seed-ai-stack'", "'stack'").replace(
        "(01-seed-ai-stack compose", "(stack compose"
    ).replace("01-seed-ai-stack-", "stack-")
    assert stat.S_IMODE((out_dir / "stack-db.container").stat().st_mode) == 0o644
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
    assert "cache: domainname: Podman has no --domainname" in err
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
    assert (out_dir / "32-lossy-built.container").is_file()
    assert not (out_dir / "32-lossy-built.build").exists()  # Podman 5.0: no .build units
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
    assert {u["name"] for u in doc["units"]} >= {
        "32-lossy-built.container",
        "32-lossy-cache.container",
    }


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
    assert "shop-job.container" in out and "shop-app.container" not in out
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


def _write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "compose.yaml").write_text(text)
    return directory / "compose.yaml"


TWO = "services:\n  db:\n    image: postgres:16\n  app:\n    image: {app}\n    depends_on: [db]\n"


def test_two_projects_in_one_folder_keep_their_own_units_and_dependencies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    units = tmp_path / "systemd"
    for name in ("shop", "blog"):
        file = _write(tmp_path / name, TWO.format(app=f"ghcr.io/example/{name}:1"))
        code, _, err = run(["-f", str(file), "-o", str(units), "--podman-version", "5.4"], capsys)
        assert code == 0, err
    names = sorted(p.name for p in units.iterdir())
    assert names == ["blog-app.container", "blog-db.container", "blog.network",
                     "shop-app.container", "shop-db.container", "shop.network"]  # fmt: skip
    shop_app = (units / "shop-app.container").read_text()
    assert "Requires=shop-db.service" in shop_app and "blog-db" not in shop_app
    # the same project imported again replaces its own files
    code, _, err = run(["-f", str(tmp_path / "shop" / "compose.yaml"), "-o", str(units),
                        "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 0, err


def test_a_file_another_project_wrote_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    units = tmp_path / "systemd"
    first = _write(tmp_path / "a" / "shop", TWO.format(app="ghcr.io/example/a:1"))
    code, _, err = run(["-f", str(first), "-o", str(units), "--podman-version", "5.4"], capsys)
    assert code == 0, err
    before = {p.name: p.read_text() for p in units.iterdir()}
    # another folder also called shop: the same project name, other compose files
    second = _write(tmp_path / "b" / "shop", TWO.format(app="ghcr.io/example/b:1"))
    code, _, err = run(["-f", str(second), "-o", str(units), "--podman-version", "5.4"], capsys)
    assert code == 73, err
    assert "refusing to overwrite" in err and "-p NAME" in err and "nothing written" in err
    assert {p.name: p.read_text() for p in units.iterdir()} == before
    # with its own name it lands beside
    code, _, err = run(["-f", str(second), "-o", str(units), "-p", "shop-b",
                        "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 0, err
    assert (units / "shop-b-app.container").is_file()
    # a unit a person wrote is not replaced either
    (units / "shop-b-db.container").write_text("[Container]\nImage=mine\n")
    code, _, err = run(["-f", str(second), "-o", str(units), "-p", "shop-b",
                        "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 73 and "not written by aistack import-compose" in err
    assert (units / "shop-b-db.container").read_text() == "[Container]\nImage=mine\n"


def test_the_next_step_line_fits_where_the_units_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path / "shop", TWO.format(app="ghcr.io/example/a:1"))
    code, _, err = run(["-f", str(file), "-o", str(tmp_path / "out"), "--podman-version", "5.4"],
                       capsys)  # fmt: skip
    assert code == 0
    nxt = next(line for line in err.splitlines() if line.startswith("next:"))
    assert f"copy the units from {tmp_path / 'out'} to /etc/containers/systemd/" in nxt
    assert "systemctl start shop-app.service shop-db.service" in nxt
    code, _, err = run(["-f", str(file), "--podman-version", "5.4"], capsys)
    nxt = next(line for line in err.splitlines() if line.startswith("next:"))
    assert "write the units to /etc/containers/systemd/" in nxt and "(-o DIR)" in nxt


# --- --into-stack: the project joins the managed stack (stack.extra) -------------------

INTO = """\
services:
  web:
    image: docker.io/library/busybox
    command: ["httpd", "-f", "-p", "8080"]
    depends_on: [db]
  db:
    image: postgres:16
"""


def _agent_yaml(tmp_path: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "# my comment\napi:\n  token_file: /nonexistent/token  # kept\n"
        "stack:\n  gpu: none\n# after the stack\nheal:\n  enabled: true\n"
    )
    return config


def test_into_stack_writes_the_entry_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = _write(tmp_path / "tools", INTO)
    config = _agent_yaml(tmp_path)
    before = config.read_text()
    code, _, err = run(["--into-stack", "-f", str(compose), "-p", "tools",
                        "--config", str(config), "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 0, err
    assert err.rstrip().endswith("next: aistack up")
    assert "tools-web" in err and "postgres is the stack's own db" in err
    text = config.read_text()
    assert text.startswith("# my comment\n") and "token_file: /nonexistent/token  # kept" in text
    assert "# after the stack\nheal:" in text
    (entry,) = parse_config(text).stack.extra
    assert entry.project == "tools" and entry.files == (compose,)
    saved = tmp_path / "agent.yaml.pre-import"
    assert saved.read_text() == before and stat.S_IMODE(saved.stat().st_mode) == 0o600
    # again, with a profile: the entry of the same project is replaced, not added
    code, _, _ = run(["--into-stack", "-f", str(compose), "-p", "tools",
                      "--profile", "x", "--config", str(config), "--podman-version", "5.4"],
                     capsys)  # fmt: skip
    assert code == 0
    (entry,) = parse_config(config.read_text()).stack.extra
    assert entry.profiles == ("x",)


def test_into_stack_refuses_what_up_would_refuse_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_yaml(tmp_path)
    before = config.read_text()
    broken = _write(tmp_path / "broken", "services:\n  web:\n    imgae: x\n")
    code, _, err = run(["--into-stack", "-f", str(broken), "-p", "b",
                        "--config", str(config)], capsys)  # fmt: skip
    assert code == 65 and str(broken) in err and "imgae" in err and "nothing written" in err
    lossy = _write(
        tmp_path / "lossy", INTO.replace("    depends_on", "    develop: {}\n    depends_on")
    )
    code, _, err = run(["--into-stack", "-f", str(lossy), "-p", "l",
                        "--config", str(config), "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 2 and "develop" in err
    home = Path("/home/someone/compose.yaml")
    code, _, err = run(["--into-stack", "-f", str(home), "-p", "h",
                        "--config", str(config)], capsys)  # fmt: skip
    assert code == 65 and "ProtectHome" in err
    no_pg = tmp_path / "no-pg.yaml"
    no_pg.write_text(before.replace("  gpu: none\n", "  gpu: none\n  postgres: {enabled: false}\n"
                                    "  litellm: {enabled: false}\n"))  # fmt: skip
    nopg_before = no_pg.read_text()
    compose = _write(tmp_path / "t", INTO)
    code, _, err = run(["--into-stack", "-f", str(compose), "-p", "t", "--config", str(no_pg),
                        "--podman-version", "5.4"], capsys)  # fmt: skip
    assert code == 65 and "disabled" in err and no_pg.read_text() == nopg_before
    assert config.read_text() == before and not (tmp_path / "agent.yaml.pre-import").exists()
