"""The deb and rpm: file lists, metadata, lintian/rpmlint, scriptlet lint, unit hardening.

What the scriptlets do to a real system (install, upgrade, remove, purge) is tested in
the testbed (tests/e2e/test_packages.py): they drive systemd, which is not here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from agent.backup.manifest import FileInfo, Manifest
from agent.backup.store import DUMP_FILE, MANIFEST_FILE
from agent.cli import build_parser
from agent.stack.model import ORDER

from .conftest import PYTHON, REPO, AgentProcess

DEB = REPO / "dist" / f"aistack_{__version__}-1_all.deb"
RPM = REPO / "dist" / f"aistack-{__version__}-1.noarch.rpm"
TEMPLATES = [
    p for p in (REPO / "units").iterdir() if p.suffix in (".container", ".network", ".volume")
]
AGENT_MODULES = sorted(
    f"/usr/lib/aistack/{p.relative_to(REPO)}" for p in (REPO / "agent").rglob("*.py")
)
DOCS = sorted(f"/usr/share/doc/aistack/{p.relative_to(REPO)}" for p in (REPO / "docs").iterdir())
MAN_PAGES = ["/usr/share/man/man1/aistack.1.gz", "/usr/share/man/man8/aistack-agent.8.gz"]
BASH_COMPLETION = "/usr/share/bash-completion/completions/aistack"
# The operators' files: every rules file in etc/prometheus ships; these must be there.
RULES = {"aistack.rules.yml", "aistack-backups.rules.yml"}
OPERATORS = sorted({*RULES, *(p.name for p in (REPO / "etc" / "prometheus").glob("*.rules.yml"))})
OPERATOR_FILES = [
    *(f"/usr/share/aistack/prometheus/{name}" for name in OPERATORS),
    "/usr/share/aistack/grafana/aistack.json",
]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is required (make deps installs it)"
    return path


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def packages() -> Iterator[None]:
    for fmt in ("deb", "rpm"):
        _run("bash", "packaging/build.sh", fmt)
    assert DEB.exists() and RPM.exists()
    yield


def _deb_files() -> dict[str, str]:
    """path -> mode string, from `dpkg -c`."""
    files = {}
    for line in _run(_need("dpkg-deb"), "-c", str(DEB)).splitlines():
        parts = line.split()
        files[parts[5].removeprefix(".").rstrip("/") or "/"] = parts[0]
    return files


def test_deb_file_list(packages: None) -> None:
    files = _deb_files()
    regular = {p for p, mode in files.items() if not mode.startswith("d")}
    assert regular == {
        *AGENT_MODULES,
        "/usr/bin/aistack",
        "/usr/bin/aistack-agent",
        "/usr/lib/systemd/system/aistack-agent.service",
        "/etc/aistack/agent.yaml",
        "/usr/share/doc/aistack/README.md",
        "/usr/share/doc/aistack/copyright",
        "/usr/share/doc/aistack/changelog.Debian.gz",
        "/usr/share/lintian/overrides/aistack",
        *(f"/usr/share/aistack/units/{p.name}" for p in TEMPLATES),
        *DOCS,
        *MAN_PAGES,
        BASH_COMPLETION,
        "/usr/share/zsh/vendor-completions/_aistack",
        *OPERATOR_FILES,
    }
    assert "/usr/share/doc/aistack/docs/architecture.md" in DOCS  # the glob found docs/
    assert files["/usr/bin/aistack"] == files["/usr/bin/aistack-agent"] == "-rwxr-xr-x"
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in files)
    assert not any("site-packages" in p or "dist-packages" in p for p in files)


def test_deb_metadata_and_conffile(packages: None) -> None:
    control = _run("dpkg-deb", "-f", str(DEB))
    depends = re.search(r"^Depends: (.*)$", control, re.M)
    assert depends is not None
    for dep in ("python3-aiohttp", "python3-apscheduler (<< 4)", "python3-structlog",
                "python3-yaml", "python3-pystemd",
                "python3-prometheus-client", "podman (>= 4.4)"):  # fmt: skip
        assert dep in depends.group(1)
    assert "nvidia" not in depends.group(1)  # optional, not in Debian
    conffiles = _run("dpkg-deb", "--ctrl-tarfile", str(DEB))  # binary; just ensure readable
    assert conffiles is not None
    info = subprocess.run(
        ["dpkg-deb", "-I", str(DEB), "conffiles"], capture_output=True, text=True, check=True
    )
    assert info.stdout.split() == ["/etc/aistack/agent.yaml"]


def test_rpm_file_list_requires_and_config(packages: None) -> None:
    _need("rpm")
    files = set(_run("rpm", "-qpl", str(RPM)).split())
    assert set(AGENT_MODULES) <= files
    assert {
        "/usr/bin/aistack",
        "/usr/bin/aistack-agent",
        "/usr/lib/systemd/system/aistack-agent.service",
        "/usr/lib/systemd/system-preset/80-aistack.preset",
        "/etc/aistack/agent.yaml",
        "/usr/lib/aistack/structlog/__init__.py",  # bundled: Fedora has no current one
        *DOCS,
        *MAN_PAGES,
        BASH_COMPLETION,
        "/usr/share/zsh/site-functions/_aistack",
        *OPERATOR_FILES,
    } <= files
    # %doc, as rpmbuild marks them: `rpm --excludedocs` and nodocs images leave them out.
    assert set(_run("rpm", "-qpd", str(RPM)).split()) == {
        "/usr/share/doc/aistack/README.md", *DOCS, *MAN_PAGES,
    }  # fmt: skip
    assert not any("__pycache__" in p for p in files)
    assert _run("rpm", "-qpc", str(RPM)).split() == ["/etc/aistack/agent.yaml"]
    requires = _run("rpm", "-qpR", str(RPM))
    assert "python3dist(apscheduler) < 4" in requires
    assert "podman >= 4.4" in requires
    assert "structlog" not in requires
    scripts = _run("rpm", "-qp", "--scripts", str(RPM))
    assert "postinstall scriptlet" in scripts and "preuninstall scriptlet" in scripts


def test_lintian_is_clean(packages: None) -> None:
    proc = subprocess.run(
        [_need("lintian"), "--fail-on", "error,warning", str(DEB)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    findings = [line for line in proc.stdout.splitlines() if re.match(r"^[EWI]: ", line)]
    assert proc.returncode == 0 and findings == [], proc.stdout + proc.stderr


def test_rpmlint_has_no_errors(packages: None) -> None:
    proc = subprocess.run(
        [_need("rpmlint"), "-r", "packaging/rpmlintrc", str(RPM)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert " 0 errors, 0 warnings" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def deb_tree(packages: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deb's files, unpacked: what a host gets."""
    root = tmp_path_factory.mktemp("deb")
    _run("dpkg-deb", "-x", str(DEB), str(root))
    return root


def _man(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""}
    return subprocess.run(
        [_need("man"), *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_a_warning(deb_tree: Path, page: str) -> None:
    """As lintian's check runs it; a help line roff reads as a request warns here."""
    path = deb_tree / page.lstrip("/")
    proc = _man("--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    head = path.read_bytes()[:10]  # gzip -n: no name, mtime 0, so builds are reproducible
    assert head[:2] == b"\x1f\x8b" and not head[3] & 0x08 and head[4:8] == b"\0\0\0\0"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}"
                yield from _commands(sub, f"{prefix} {name}")


def test_man_pages_show_every_subcommand_and_option(deb_tree: Path) -> None:
    """`man aistack` and `man 8 aistack-agent`, looked up by name where the deb puts them."""
    manpath = str(deb_tree / "usr/share/man")
    text = _man("-M", manpath, "aistack").stdout
    commands = list(_commands(build_parser(), "aistack"))
    assert "aistack backup restore" in commands and len(commands) > 20
    assert [c for c in commands if f"\n   {c}\n" not in text] == []  # each its subsection
    assert "EXIT STATUS" in text and "78  the config file is invalid" in text
    assert "aistack-agent(8)" in text
    agent = _man("-M", manpath, "8", "aistack-agent").stdout
    assert "AISTACK-AGENT(8)" in agent and "--init" in agent and "aistack(1)" in agent


def _complete(deb_tree: Path, line: str, path: str) -> list[str]:
    """COMPREPLY for `line` (its last word, maybe empty, is being completed), with the
    function the installed script registers for aistack, as bash calls it on TAB."""
    script = deb_tree / BASH_COMPLETION.lstrip("/")
    words = line.split(" ")
    code = (
        f"source {shlex.quote(str(script))} || exit 9\n"
        'func=$(complete -p aistack | sed -n "s/.* -F \\([^ ]*\\) .*/\\1/p")\n'
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '"$func" aistack "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    proc = subprocess.run(
        [_need("bash"), "--norc", "--noprofile", "-c", code], capture_output=True, text=True,
        env={**os.environ, "PATH": path}, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return sorted(proc.stdout.split())


def _fake_aistack(tmp_path: Path, body: str) -> str:
    """A PATH whose `aistack` runs `body`: the completion's view of the system."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aistack").write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / "aistack").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_bash_completion_loads_and_completes_commands(deb_tree: Path, tmp_path: Path) -> None:
    script = shlex.quote(str(deb_tree / BASH_COMPLETION.lstrip("/")))
    proc = subprocess.run(
        [_need("bash"), "--norc", "-c", f"source {script}; complete -p aistack"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("complete ") and proc.stdout.split()[-1] == "aistack"
    down = _fake_aistack(tmp_path, "echo 'aistack: the agent is not answering' >&2; exit 3")
    assert _complete(deb_tree, "aistack res", down) == ["restart"]
    assert _complete(deb_tree, "aistack backup re", down) == ["restore"]
    assert _complete(deb_tree, "aistack secrets rotate ", down) == [
        "litellm-master-key", "webui-secret-key",
    ]  # fmt: skip
    # The agent down: every service the CLI accepts (`aistack logs` works without it),
    # and backups only `latest`; never an error on the command line.
    assert _complete(deb_tree, "aistack logs ", down) == sorted(ORDER)
    assert _complete(deb_tree, "aistack restart o", down) == ["ollama", "open-webui"]
    assert _complete(deb_tree, "aistack backup restore ", down) == ["latest"]


def test_bash_completion_asks_the_system_for_services_and_backup_ids(
    deb_tree: Path, tmp_path: Path
) -> None:
    path = _fake_aistack(
        tmp_path,
        """case "$1 $2" in
"status --json") echo '{"state": "ok", "services": {"ollama": {}, "postgres": {}}}';;
"backup list") echo '{"backups": [{"id": "20261126T020000Z"}, {"id": "20261125T020000Z"}]}';;
*) exit 2;;
esac""",
    )
    assert _complete(deb_tree, "aistack down ", path) == ["ollama", "postgres"]
    assert _complete(deb_tree, "aistack --config /etc/x.yaml logs p", path) == ["postgres"]
    assert _complete(deb_tree, "aistack backup restore 2026112", path) == [
        "20261125T020000Z", "20261126T020000Z",
    ]  # fmt: skip
    assert _complete(deb_tree, "aistack backup verify l", path) == ["latest"]


def test_bash_completion_reads_what_the_real_cli_prints(
    deb_tree: Path,
    tmp_path: Path,
    start_agent,  # type: ignore[no-untyped-def]
) -> None:
    """The real agent and CLI behind TAB: the fakes above print what these commands print."""
    backups = tmp_path / "backups"
    for backup_id in ("20261125T020000Z", "20261126T020000Z"):
        (backups / backup_id).mkdir(parents=True)
        manifest = Manifest(
            id=backup_id, database="litellm", source="local 127.0.0.1:5432",
            started_at=1.0, finished_at=2.0, dump=FileInfo(DUMP_FILE, 1000, "ab" * 32),
            globals=FileInfo("globals.sql", 20, "ab" * 32), compression="zstd:3",
            server_version="17.2", pg_dump_version="17.2", verified_at=2.0, warnings=(),
            agent_version=__version__,
        )  # fmt: skip
        (backups / backup_id / MANIFEST_FILE).write_bytes(manifest.to_json())
    agent: AgentProcess = start_agent(f"backups:\n  directory: {backups}\n")
    cli = f"cd {REPO} && exec {PYTHON} -m agent.cli --config {agent.config}"
    path = _fake_aistack(tmp_path, f'{cli} "$@"')
    assert _complete(deb_tree, "aistack backup restore 2026", path) == [
        "20261125T020000Z", "20261126T020000Z",
    ]  # fmt: skip
    # No Podman here: the agent knows no service yet, and TAB offers every one.
    status = subprocess.run(
        ["sh", "-c", f"{cli} status --json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(status.stdout)["services"] == {}, status.stderr
    assert _complete(deb_tree, "aistack restart ", path) == sorted(ORDER)


def test_zsh_completion_is_found_by_compinit(deb_tree: Path) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    folder = deb_tree / "usr/share/zsh/vendor-completions"
    proc = subprocess.run(
        [zsh, "-f", "-c", f"zsh -n {folder}/_aistack || exit 9; fpath=({folder} $fpath); "
         "autoload -Uz compinit; compinit -u -D; print -r -- $_comps[aistack]"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "_aistack", proc.stdout + proc.stderr


def test_scriptlets_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in (REPO / "packaging" / "scripts").glob("*.sh"))
    assert len(scripts) == 3
    _run(_need("shellcheck"), *scripts, "packaging/build.sh")


def test_launchers_use_the_private_module_folder() -> None:
    for name, module in (("aistack", "agent.cli"), ("aistack-agent", "agent.daemon")):
        text = (REPO / "packaging" / "bin" / name).read_text()
        assert text.startswith("#!/usr/bin/python3 -I\n")
        assert 'sys.path[:0] = ["/usr/lib/aistack", "/usr/local/lib/aistack"]' in text
        assert f"from {module} import main" in text


def _exposure() -> float:
    out = _run(_need("systemd-analyze"), "security", "--offline=true",
               "units/aistack-agent.service")  # fmt: skip
    match = re.search(r"Overall exposure level for aistack-agent.service: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def test_unit_exposure_does_not_rise_above_the_readme_figure() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"exposure score is \*\*([0-9.]+)\*\*", readme)
    assert match, "README must state the unit's exposure score"
    recorded = float(match.group(1))
    assert recorded <= 4.0
    assert _exposure() <= recorded


def test_unit_bounds_memory_files_and_tasks_each_with_a_reason() -> None:
    lines = (REPO / "units" / "aistack-agent.service").read_text().splitlines()
    for key in ("MemoryMax=", "LimitNOFILE=", "TasksMax="):
        at = next(i for i, line in enumerate(lines) if line.startswith(key))
        above = next(line for line in reversed(lines[:at]) if not line.startswith(("Memory",)))
        assert above.startswith("#"), f"{key} needs a comment saying why"
    verify = shutil.which("systemd-analyze")
    if verify:  # the unit file parses with these keys
        unit = str(REPO / "units" / "aistack-agent.service")
        proc = subprocess.run([verify, "verify", "--man=no", unit], capture_output=True, text=True)
        keys = ("MemoryHigh", "MemoryMax", "LimitNOFILE", "TasksMax")
        assert not [line for line in proc.stderr.splitlines() if any(k in line for k in keys)]
