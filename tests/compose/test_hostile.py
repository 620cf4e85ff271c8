"""Hostile compose projects: each is refused (exit 65, or 73 for outputs) or converted,
through the real CLI, in bounded time and memory: never a traceback, a hang, a write
outside `-o`, or the text of a file that is not a compose file in a message.

Cases that hung, crashed the interpreter or exhausted memory before run the CLI in a
subprocess; its timeout is a hang guard, not a speed assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.compose import cli as compose_cli
from agent.compose.cli import EX_CANTCREAT, OutputError, write_units
from agent.compose.errors import EX_DATAERR
from agent.quadlet import UnitFile
from tests.compose.golden import FIXTURES

REPO = Path(__file__).resolve().parents[2]
HANG_S = 60
SEED = FIXTURES / "01-seed-ai-stack"
WEB = "    image: nginx\n"


@pytest.fixture(autouse=True)
def _clean_compose_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        monkeypatch.delenv(name, raising=False)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["import-compose", "--podman-version", "5.0", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "import-compose", "--podman-version", "5.0", *args],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_S,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def compose(directory: Path, text: str, name: str = "compose.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")}


# --- 1. names become file names only after validation ----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'services:\n  "../../../x":\n{WEB}', "services.../../../x: not a valid service name"),
        (f'services:\n  "/etc/x":\n{WEB}', "services./etc/x: not a valid service name"),
        (f'services:\n  ".hidden":\n{WEB}', "services..hidden: not a valid service name"),
        (
            f'services:\n  "we\\nb":\n{WEB}',
            "services.'we\\nb': not a valid service name",
        ),
        (
            f'services:\n  "a\\u001b[2Jb":\n{WEB}',
            "not a valid service name",
        ),
        (
            f"services:\n  web:\n{WEB}    networks: [n/x]\nnetworks:\n  n/x: {{}}\n",
            "networks.n/x: not a valid network name",
        ),
        (
            f"services:\n  web:\n{WEB}    volumes: ['a/b:/data']\nvolumes:\n  a/b: {{}}\n",
            "volumes.a/b: not a valid volume name",
        ),
        (
            f"services:\n  web:\n{WEB}secrets:\n  ../s:\n    file: ./s\n",
            "secrets.../s: not a valid secret name",
        ),
        (
            f"services:\n  web:\n{WEB}configs:\n  c/../../d:\n    file: ./c\n",
            "configs.c/../../d: not a valid config name",
        ),
    ],
    ids=[
        "dotdot",
        "absolute",
        "hidden",
        "newline",
        "escape",
        "network",
        "volume",
        "secret",
        "config",
    ],
)
def test_a_name_that_is_not_a_file_name_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    file = compose(tmp_path / "p" / "q", text)
    out_dir = tmp_path / "p" / "q" / "out"
    before = files_under(tmp_path)
    code, out, err = run(["-f", str(file), "-o", str(out_dir)], capsys)
    assert code == EX_DATAERR and out == ""
    assert expected in err
    assert "\x1b" not in err and err.count("\n") == 1  # one line, control characters escaped
    assert files_under(tmp_path) == before  # nothing written, inside -o or outside


def test_a_name_too_long_for_a_file_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = compose(tmp_path, f"services:\n  {'a' * 250}:\n{WEB}")
    code, _, err = run(["-f", str(file), "-o", str(tmp_path / "out")], capsys)
    assert code == EX_DATAERR and "would be longer than 240 bytes" in err
    assert not (tmp_path / "out").exists()


def test_the_writer_refuses_a_unit_outside_the_output_folder(tmp_path: Path) -> None:
    """Defence in depth: whatever the loader let through, write_units writes nothing
    unless every unit is a plain file name inside the folder."""
    out_dir = tmp_path / "out" / "units"
    good = UnitFile("web.container")
    for bad in ("../x.container", "/tmp/x.container", "a/b.container", ".x.container", "x.sh"):
        with pytest.raises(OutputError, match="not a plain unit file name"):
            write_units([good, UnitFile(bad)], out_dir)
        assert not (tmp_path / "out").exists() and not (tmp_path / "x.container").exists()


def test_the_cli_exits_73_when_the_writer_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = compose_cli.convert

    def sneaky(*args: object, **kwargs: object) -> list[UnitFile]:
        return [*real(*args, **kwargs), UnitFile("../escaped.container")]  # type: ignore[arg-type]

    monkeypatch.setattr(compose_cli, "convert", sneaky)
    file = compose(tmp_path, f"services:\n  web:\n{WEB}")
    code, _, err = run(["-f", str(file), "-o", str(tmp_path / "out")], capsys)
    assert code == EX_CANTCREAT and "refusing to write '../escaped.container'" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.container").exists()


# --- 2. the text of a file that is not a compose file is never echoed -----------------

SECRET = "S3cr3tH4sh"
SHADOW = "".join(
    f"{user}:$6${SECRET}{user}:20228:0:99999:7:::\n" for user in ("alice", "bob", "_apt")
)


@pytest.mark.parametrize(
    "content",
    [
        SHADOW,  # parses as a mapping whose keys are whole lines
        f"{SECRET}: [unclosed\n",  # a YAML syntax error
        f"services: {{}}\n{SECRET}:*:1: 1\n",  # a compose key, and a key that is not a name
        f"a: 1\n'{SECRET}:x': 1\n'{SECRET}:x': 2\n",  # a duplicate key
        f"a: !{SECRET} x\n",  # an unknown tag
        f"-----BEGIN KEY-----\n{SECRET}+abc/def==\n",  # a PEM file
    ],
    ids=["shadow", "syntax-error", "not-a-key-name", "duplicate-key", "tag", "pem"],
)
def test_an_included_non_compose_file_is_named_but_never_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(content)
    file = compose(tmp_path / "p", f"services:\n  web:\n{WEB}include:\n  - {secret}\n")
    code, _, err = run(["-f", str(file)], capsys)
    assert code == EX_DATAERR
    assert f"import-compose: {secret}: " in err
    assert SECRET not in err and "alice" not in err, err
    code, out, _ = run(["-f", str(file), "--json"], capsys)
    assert code == EX_DATAERR and SECRET not in out


def test_shadow_like_include_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SHADOW)
    file = compose(tmp_path / "p", f"services:\n  web:\n{WEB}include: [{secret}]\n")
    code, _, err = run(["-f", str(file)], capsys)
    assert code == EX_DATAERR
    assert f"{secret}: line 3, column 1: not a compose file" in err


@pytest.mark.parametrize("option", ["env_file", "label_file"])
def test_a_malformed_env_or_label_file_is_named_by_line_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    secret = tmp_path / "id_key"
    secret.write_text(f"-----BEGIN KEY-----\n{SECRET}+abc/def==\n")
    file = compose(tmp_path / "p", f"services:\n  web:\n{WEB}    {option}: {secret}\n")
    code, _, err = run(["-f", str(file)], capsys)
    assert code == EX_DATAERR and f"{secret}: line 1: expected KEY=VALUE" in err
    assert SECRET not in err and "BEGIN" not in err


def test_a_litellm_config_that_is_another_file_is_not_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "stack"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns("expected"))
    config = project / "config.yml"
    config.write_text(SHADOW)
    code, out, err = run(
        ["-f", str(project / "docker-compose.yml"), "--stack-config", str(tmp_path / "s.yaml")],
        capsys,
    )
    assert code == 0
    assert f"{config} is not a LiteLLM config" in err
    assert SECRET not in err + out


# --- 3. bombs: bounded work, clear errors --------------------------------------------

BILLION_LAUGHS = "x-l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BILLION_LAUGHS + f"services:\n  web:\n{WEB}", "more than 100000 values once aliases"),
        (
            "x-a: &a {<<: &b {k: v}}\n"
            + "".join(
                f"x-m{i}: &m{i}\n  <<: [{', '.join([f'*m{i - 1}' if i > 1 else '*b'] * 8)}]\n"
                f"  k{i}: v\n"
                for i in range(1, 12)
            )
            + f"services:\n  web:\n{WEB}",
            "more than 100000 values once aliases",
        ),
        ("x-r: &r [1, *r]\n" + f"services:\n  web:\n{WEB}", "an alias refers to a collection"),
        ("x-d: " + "[" * 200_000 + "]" * 200_000 + "\n", "nested more than 100 levels deep"),
        (
            "x-a0: &a0 [x]\n"
            + "".join(f"x-a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 5000))
            + f"services:\n  web:\n{WEB}",
            "nested more than 100 levels deep once aliases are followed",
        ),
        (
            f"x-s: &s '{'x' * 2_000_000}'\nx-t: [{', '.join(['*s'] * 40)}]\n"
            f"services:\n  web:\n{WEB}",
            "more than 32 MiB of text once aliases",
        ),
    ],
    ids=["billion-laughs", "merge-keys", "recursive-alias", "deep-flow", "alias-chain", "text"],
)
def test_yaml_bombs_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    file = compose(tmp_path, text)
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR and expected in proc.stderr, proc.stderr[-2000:]


def test_a_file_over_4_mib_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = compose(tmp_path, f"services:\n  web:\n{WEB}x-pad: '{'x' * (4 << 20)}'\n")
    code, _, err = run(["-f", str(file)], capsys)
    assert code == EX_DATAERR and f"{file}: (file): larger than 4 MiB" in err


def test_an_include_bomb_is_refused(tmp_path: Path) -> None:
    for level in range(6):
        body = f"services:\n  s{level}:\n{WEB}"
        if level < 5:
            body += "include:\n" + f"  - l{level + 1}.yaml\n" * 10
        compose(tmp_path, body, f"l{level}.yaml")
    proc = run_subprocess("-f", str(tmp_path / "l0.yaml"))
    assert proc.returncode == EX_DATAERR
    assert "the project parses more than 1000 compose files" in proc.stderr


def test_an_env_file_that_doubles_on_every_line_is_refused(tmp_path: Path) -> None:
    lines = ["A0=" + "x" * 100] + [f"A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 64)]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    file = compose(tmp_path, f"services:\n  web:\n{WEB}")
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR
    assert "the value grows past" in proc.stderr and "once variables are replaced" in proc.stderr


def test_interpolation_that_amplifies_a_variable_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BIG=" + "y" * 3_000_000 + "\n")
    env = "".join(f"      K{i}: ${{BIG}}\n" for i in range(100))
    file = compose(tmp_path, f"services:\n  web:\n{WEB}    environment:\n{env}")
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR
    assert "the file's values grow past 67108864 characters" in proc.stderr


def test_extends_fanning_out_a_large_base_is_refused(tmp_path: Path) -> None:
    env = "".join(f"      K{i}: v\n" for i in range(40_000))
    services = "".join(f"  s{i}:\n    extends: base\n" for i in range(30))
    file = compose(tmp_path, f"services:\n  base:\n{WEB}    environment:\n{env}{services}")
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR
    assert "more than 1000000 values once extends and includes are applied" in proc.stderr


def test_an_env_file_inlined_into_many_services_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.env").write_text("".join(f"K{i}='v'\n" for i in range(1000)))
    services = "".join(f"  s{i}:\n{WEB}    env_file: big.env\n" for i in range(250))
    file = compose(tmp_path, f"services:\n{services}")
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR
    assert "the units would hold more than 200000 values" in proc.stderr


# --- 4. what used to be a traceback --------------------------------------------------


def chain(n: int, cycle: bool = False) -> str:
    lines = ["services:"]
    for i in range(n):
        dep = (i + 1) % n if cycle or i + 1 < n else None
        lines.append(f"  s{i}:\n{WEB}" + (f"    depends_on: [s{dep}]" if dep is not None else ""))
    return "\n".join(lines) + "\n"


def test_a_depends_on_chain_of_3000_services_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["-f", str(compose(tmp_path, chain(3000)))], capsys)
    assert code == 0 and out.count(".container <==") == 3000
    assert "Requires=test_a_depends_on_chain_of_3000-s1.service" in out


def test_a_depends_on_cycle_of_3000_services_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-f", str(compose(tmp_path, chain(3000, cycle=True)))], capsys)
    assert code == EX_DATAERR and "services.s0.depends_on: dependency cycle: s0 -> s1 -> " in err


def test_an_extends_chain_of_3000_services_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "services:\n" + "".join(f"  s{i}:\n    extends: s{i + 1}\n" for i in range(2999))
    text += f"  s2999:\n{WEB}    environment: {{FROM: root}}\n"
    code, out, _ = run(["-f", str(compose(tmp_path, text))], capsys)
    assert code == 0 and out.count("Environment=FROM=root") == 3000


@pytest.mark.parametrize("where", ["compose", "dotenv"])
def test_deeply_nested_interpolation_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    value = "x"
    for _ in range(2000):
        value = "${X:-" + value + "}"
    if where == "compose":
        file = compose(tmp_path, f"services:\n  web:\n{WEB}    environment:\n      A: '{value}'\n")
    else:
        (tmp_path / ".env").write_text(f"A={value}\n")
        file = compose(tmp_path, f"services:\n  web:\n{WEB}")
    code, _, err = run(["-f", str(file)], capsys)
    assert code == EX_DATAERR and "interpolation nested more than 32 levels deep" in err


@pytest.mark.parametrize("how", ["-f", "include", "env_file", "--env-file", "extends"])
def test_dev_zero_is_refused_as_not_a_regular_file(tmp_path: Path, how: str) -> None:
    text = f"services:\n  web:\n{WEB}"
    if how == "include":
        text += "include: [/dev/zero]\n"
    elif how == "extends":
        text += "    extends: {file: /dev/zero, service: base}\n"
    else:
        text += "    env_file: /dev/zero\n"
    file = compose(tmp_path, text)
    if how == "-f":
        args = ["-f", "/dev/zero"]
    elif how == "--env-file":
        args = ["--env-file", "/dev/zero", "-f", str(file)]
    else:
        args = ["-f", str(file)]
    proc = run_subprocess(*args)
    assert proc.returncode == EX_DATAERR, proc.stderr[-2000:]
    assert "/dev/zero" in proc.stderr and "not a regular file" in proc.stderr


@pytest.mark.parametrize("how", ["include", "env_file", "label_file"])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, how: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    extra = {
        "include": f"include: [{fifo}]\n",
        "env_file": f"    env_file: {fifo}\n",
        "label_file": f"    label_file: {fifo}\n",
    }[how]
    file = compose(tmp_path, f"services:\n  web:\n{WEB}{extra}")
    proc = run_subprocess("-f", str(file))
    assert proc.returncode == EX_DATAERR and "not a regular file" in proc.stderr


def test_output_that_is_a_regular_file_exits_73(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = compose(tmp_path, f"services:\n  web:\n{WEB}")
    existing = tmp_path / "units"
    existing.write_text("keep me\n")
    code, _, err = run(["-f", str(file), "-o", str(existing)], capsys)
    assert code == EX_CANTCREAT
    assert f"-o {existing}: exists and is not a directory; nothing written" in err
    assert existing.read_text() == "keep me\n"
    code, _, err = run(["-f", str(file), "-o", str(existing / "sub")], capsys)
    assert code == EX_CANTCREAT and f"cannot be created: {existing} is not a directory" in err
    code, out, _ = run(["-f", str(file), "-o", str(existing), "--json"], capsys)
    assert code == EX_CANTCREAT and json.loads(out)["error"]["path"] == "-o"


def test_stack_config_that_is_a_directory_exits_73_before_writing_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "stack"
    shutil.copytree(SEED, project, ignore=shutil.ignore_patterns("expected"))
    (tmp_path / "conf").mkdir()
    out_dir = tmp_path / "out"
    code, _, err = run(
        [
            "-f",
            str(project / "docker-compose.yml"),
            "-o",
            str(out_dir),
            "--stack-config",
            str(tmp_path / "conf"),
        ],
        capsys,
    )
    assert code == EX_CANTCREAT and "--stack-config" in err and "is a directory" in err
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x-n: 0b_\n", "line 4, column 6: invalid YAML: not a valid integer"),
        (f"x-n: {'9' * 5000}\n", "invalid YAML: not a valid integer"),
        ("    shm_size: 9e999\n", "services.web.shm_size: invalid value"),
        ("    mem_limit: .inf\n", "services.web.mem_limit: invalid value"),
        (
            "    deploy: {resources: {reservations: {devices: [{capabilities: [gpu], "
            f"count: {'9' * 30}}}]}}}}}}\n",
            "more than 1024 GPUs",
        ),
        ("    security_opt: ['']\n", None),
        ("    build: [1]\n", "services.web.build: expected a string or a mapping"),
        ("    container_name: [a]\n", "services.web.container_name: expected a string"),
    ],
    ids=["0b_", "5000-digits", "9e999", "inf", "gpu-count", "empty-opt", "build", "name-list"],
)
def test_odd_values_end_in_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str | None
) -> None:
    text = f"services:\n  web:\n{WEB}{value}"
    code, _, err = run(["-f", str(compose(tmp_path, text))], capsys)
    if expected is None:
        assert code in (0, 2) and "Traceback" not in err
    else:
        assert code == EX_DATAERR and expected in err, err


def test_a_symlink_loop_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    code, _, err = run(["-f", str(tmp_path / "a.yaml")], capsys)
    assert code == EX_DATAERR and "cannot resolve the path" in err


def test_a_path_with_a_newline_cannot_inject_a_unit_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The comment heading a unit names the file a service came from; a directory name
    holding a newline must not end the comment and start `ExecStartPre=`."""
    included = compose(tmp_path / "sub\nExecStartPre=evil", f"services:\n  evil:\n{WEB}")
    file = compose(tmp_path, f"services:\n  web:\n{WEB}include:\n  - {json.dumps(str(included))}\n")
    code, out, _ = run(["-f", str(file)], capsys)
    assert code == 0 and "-evil.container <==" in out
    assert "\\nExecStartPre=evil" in out  # escaped inside the comment
    assert not [line for line in out.splitlines() if line.startswith("ExecStartPre=")]


def test_control_characters_in_keys_are_escaped_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = compose(tmp_path, f'services:\n  web:\n{WEB}    environment: ["\\e[2JUNSET_X"]\n')
    code, _, err = run(["-f", str(file)], capsys)
    assert code == 0 and "\x1b" not in err and "\\x1b[2JUNSET_X" in err
