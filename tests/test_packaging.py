"""The deb and rpm: file lists, metadata, lintian/rpmlint, scriptlet lint, unit hardening.

What the scriptlets do to a real system (install, upgrade, remove, purge) is tested in
the testbed (tests/e2e/test_packages.py): they drive systemd, which is not here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from agent import __version__

from .conftest import REPO

DEB = REPO / "dist" / f"aistack_{__version__}-1_all.deb"
RPM = REPO / "dist" / f"aistack-{__version__}-1.noarch.rpm"
TEMPLATES = [
    p for p in (REPO / "units").iterdir() if p.suffix in (".container", ".network", ".volume")
]
AGENT_MODULES = sorted(
    f"/usr/lib/aistack/{p.relative_to(REPO)}" for p in (REPO / "agent").rglob("*.py")
)


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
    }
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
    } <= files
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
