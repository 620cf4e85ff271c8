"""`aistack doctor` on this host (no Podman socket, no systemd bus), and its pure parts:
meminfo parsing, the model-size-against-memory decision, the GPU and disk verdicts,
rendering, the JSON document and the exit codes.

The real CLI runs as a subprocess against real things: a missing socket, a socket that
accepts and never answers (a hung Podman), a real agent. Checks that hang or raise are
fault injections, and named so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import doctor
from agent.config import AgentConfig, parse_config
from agent.doctor import (
    OK,
    PROBLEM,
    WARNING,
    Context,
    Finding,
    GpuFacts,
    ModelSize,
    disk_finding,
    judge_gpu,
    memory_findings,
    ollama_urls,
    parse_meminfo,
)

from ..conftest import HANG_S, REPO, AgentProcess, agent_env, free_port

AISTACK = REPO / ".venv" / "bin" / "aistack"
GB = 10**9
MEMINFO = """\
MemTotal:       16303740 kB
MemFree:         1024000 kB
MemAvailable:    8000000 kB
Buffers:          123456 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def run_doctor(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = str(AISTACK) if AISTACK.exists() else "aistack"
    return subprocess.run(
        [exe, "doctor", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env=env or agent_env(),
    )  # fmt: skip


@pytest.fixture
def host_config(tmp_path: Path) -> Path:
    """A config for this host: nothing listens at its agent port, Ollama URL or socket."""
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"api:\n  port: {free_port()}\n"
        f"watch:\n  podman_socket: {tmp_path / 'podman.sock'}\n"
        f"gpu:\n  ollama_url: http://127.0.0.1:{free_port()}\n"
        f"backups:\n  directory: {tmp_path / 'backups'}\n"
    )
    return path


# --------------------------------------------------------------------------- the real CLI


def test_without_podman_reports_the_socket_with_its_fix_and_exits_1(host_config: Path) -> None:
    proc = run_doctor("--config", str(host_config))  # its timeout is the hang guard
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    podman = next(i for i, line in enumerate(lines) if line.startswith("✗ podman"))
    assert "no Podman API socket at" in lines[podman]
    assert lines[podman + 1].strip() == "fix: systemctl enable --now podman.socket"
    # what needs Podman says why it did not look; the rest still ran
    assert any(line.startswith("! network") and "not checked" in line for line in lines)
    for check in ("agent", "services", "memory", "gpu", "disk"):
        assert any(line[2:].startswith(check) for line in lines), check
    assert any("the agent is not running" in line for line in lines)
    assert "systemctl start aistack-agent" in proc.stdout
    assert lines[-1].endswith("warnings") and "problem" in lines[-1]


def test_json_document(host_config: Path) -> None:
    proc = run_doctor("--json", "--config", str(host_config))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert set(doc) == {"findings", "problems", "warnings"}
    for f in doc["findings"]:
        assert set(f) == {"check", "severity", "summary", "fix"}
        assert f["severity"] in ("ok", "warning", "problem")
        assert f["fix"] or f["severity"] == "ok", f
    assert doc["problems"] == sum(f["severity"] == "problem" for f in doc["findings"])
    assert doc["warnings"] == sum(f["severity"] == "warning" for f in doc["findings"])
    podman = [f for f in doc["findings"] if f["check"] == "podman"]
    assert podman[0]["severity"] == "problem"
    assert podman[0]["fix"] == "systemctl enable --now podman.socket"
    checks = [f["check"] for f in doc["findings"]]
    assert checks.index("agent") < checks.index("podman") < checks.index("disk")


def test_config_before_the_command_and_from_the_environment(host_config: Path) -> None:
    proc = subprocess.run(
        [str(AISTACK), "--config", str(host_config), "doctor", "--json"],
        capture_output=True, text=True, timeout=60, env=agent_env(),
    )  # fmt: skip
    assert str(host_config.parent / "podman.sock") in proc.stdout
    proc = run_doctor("--json", env=agent_env(AISTACK_CONFIG=str(host_config)))
    assert str(host_config.parent / "podman.sock") in proc.stdout


def test_invalid_config_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("watch:\n  podman_sockt: /run/podman/podman.sock\n")
    proc = run_doctor("--config", str(bad))
    assert proc.returncode == 78
    assert "watch.podman_sockt: unknown key" in proc.stderr


@pytest.fixture
def hung_podman_socket() -> Iterator[Path]:
    """Fault: a Podman socket that accepts connections and never answers (a hung podman)."""
    short = Path(tempfile.mkdtemp(prefix="hung"))  # AF_UNIX paths are short
    path = short / "podman.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)  # never accepted: the kernel completes the connects, nobody reads
    yield path
    server.close()
    path.unlink(missing_ok=True)
    short.rmdir()


def test_a_hung_podman_does_not_hang_doctor(host_config: Path, hung_podman_socket: Path) -> None:
    text = host_config.read_text().replace(
        str(host_config.parent / "podman.sock"), str(hung_podman_socket)
    )
    host_config.write_text(text)
    proc = run_doctor("--json", "--config", str(host_config))  # its timeout: the hang guard
    doc = json.loads(proc.stdout)
    podman = next(f for f in doc["findings"] if f["check"] == "podman")
    assert podman["severity"] == "problem" and "timed out" in podman["summary"], podman
    assert "systemctl restart podman.socket" in podman["fix"]
    # the checks that need Podman did not wait for it again, one after the other
    network = next(f for f in doc["findings"] if f["check"] == "network")
    assert network["summary"].startswith("not checked: the Podman API at")
    assert proc.returncode == 1
    assert "still checking podman" in proc.stderr  # progress, on stderr only


def test_with_the_agent_running_reads_its_status(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    proc = run_doctor("--json", "--config", str(agent.config))
    doc = json.loads(proc.stdout)
    found = next(f for f in doc["findings"] if f["check"] == "agent")
    # no Podman or D-Bus here: the agent answers, and says it is degraded
    assert found["severity"] == "warning", found
    assert found["summary"].startswith(f"aistack-agent 0.1.0 answers at {agent.base}")
    assert "podman" in found["summary"]
    gpu = next(f for f in doc["findings"] if f["check"] == "gpu")
    assert gpu["severity"] == "ok" and "CPU inference" in gpu["summary"]


def test_help_lists_the_exit_codes() -> None:
    proc = run_doctor("--help")
    assert proc.returncode == 0
    assert "1   at least one problem" in proc.stdout and "78" in proc.stdout


# --------------------------------------------------------------------------- running checks


def test_a_hanging_check_is_left_behind_and_the_others_run() -> None:
    release, finished = threading.Event(), threading.Event()

    def hanging_check_fault(ctx: Context) -> list[Finding]:
        release.wait(HANG_S)
        finished.set()
        return [Finding("hangs", OK, "never seen")]

    def raising_check_fault(ctx: Context) -> list[Finding]:
        raise RuntimeError("boom")

    def fine(ctx: Context) -> list[Finding]:
        return [Finding("fine", OK, "ran")]

    progress: list[str] = []
    ctx = Context(AgentConfig(), "http://127.0.0.1:1")
    findings = doctor.run_checks(
        ctx,
        [("hangs", hanging_check_fault), ("raises", raising_check_fault), ("fine", fine)],
        limit=0.5,
        progress=progress.append,
    )
    still_hanging = not finished.is_set()  # run_checks did not wait for the hung check
    release.set()
    assert still_hanging
    assert [(f.check, f.severity) for f in findings] == [
        ("hangs", PROBLEM), ("raises", WARNING), ("fine", OK),
    ]  # fmt: skip
    assert "no answer within 0.5 s" in findings[0].summary
    assert "RuntimeError: boom" in findings[1].summary
    assert progress == []  # under PROGRESS_AFTER_S: no progress line


def test_checks_needing_podman_say_why_once_it_is_down(tmp_path: Path) -> None:
    config = parse_config(f"watch:\n  podman_socket: {tmp_path / 'none.sock'}\n")
    ctx = Context(config, "http://127.0.0.1:1")
    findings = doctor.run_checks(
        ctx, [(n, c) for n, c in doctor.CHECKS if n in ("podman", "network", "webui-ollama")]
    )
    assert [f.severity for f in findings] == [PROBLEM, WARNING, WARNING]
    assert all("no Podman API socket" in f.summary for f in findings)
    assert findings[1].fix == doctor.FIX_PODMAN_FIRST


# --------------------------------------------------------------------------- pure parts


def test_parse_meminfo_in_bytes() -> None:
    info = parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 16303740 * 1024
    assert info["MemAvailable"] == 8000000 * 1024
    assert info["HugePages_Total"] == 0  # no unit: a count, not kB
    real = parse_meminfo(Path("/proc/meminfo").read_text())
    assert 0 < real["MemAvailable"] <= real["MemTotal"]


def _mem(available_gb: float, total_gb: float = 64) -> dict[str, int]:
    return {"MemAvailable": int(available_gb * GB), "MemTotal": int(total_gb * GB)}


def test_memory_cpu_inference_largest_model_against_available() -> None:
    installed = [ModelSize("llama3.2:3b", 2 * GB), ModelSize("llama3.3:70b", 43 * GB)]
    [f] = memory_findings(_mem(16), installed, [], gpu_memory=0)
    assert f.severity == WARNING and "llama3.3:70b" in f.summary and "CPU inference" in f.summary
    assert "quantization" in (f.fix or "") and "OLLAMA_KEEP_ALIVE" in (f.fix or "")
    [f] = memory_findings(_mem(48), installed, [], gpu_memory=0)
    assert f.severity == OK and "fits" in f.summary and "llama3.3:70b" in f.summary


def test_memory_loaded_models_count_as_freeable_and_are_not_compared_again() -> None:
    big = ModelSize("mixtral", 26 * GB)
    other = ModelSize("qwen", 20 * GB)
    # the big one is loaded already: it fits, whatever is left
    [f] = memory_findings(_mem(4), [big], [big], gpu_memory=0)
    assert f.severity == OK and "1 model(s) loaded" in f.summary
    # another one is loaded: Ollama unloads it to load the big one
    [f] = memory_findings(_mem(8), [big, other], [other], gpu_memory=0)
    assert f.severity == OK


def test_memory_with_a_gpu_only_what_spills_needs_ram() -> None:
    model = ModelSize("llama3.3:70b", 43 * GB)
    [f] = memory_findings(_mem(8), [model], [], gpu_memory=48 * 10**9)
    assert f.severity == OK and "GPU memory" in f.summary
    [f] = memory_findings(_mem(8), [model], [], gpu_memory=24 * 10**9)
    assert f.severity == WARNING and "needs 19.0 GB of RAM" in f.summary


def test_memory_model_partly_on_the_cpu_is_slow() -> None:
    loaded = ModelSize("llama3.3:70b", 43 * GB, vram=23 * GB)
    findings = memory_findings(_mem(30), [loaded], [loaded], gpu_memory=24 * GB)
    assert [f.severity for f in findings] == [WARNING]
    assert "runs 46% on the CPU" in findings[0].summary


def test_memory_unknowns_and_low_memory() -> None:
    [f] = memory_findings(_mem(8), None, [], gpu_memory=None)
    assert f.severity == OK and "Ollama not answering" in f.summary
    on_gpu = ModelSize("a", 4 * GB, vram=4 * GB)
    [f] = memory_findings(_mem(8), [on_gpu, ModelSize("b", 90 * GB)], [on_gpu], gpu_memory=None)
    assert f.severity == OK and "not judged" in f.summary  # a GPU of unknown size
    [f] = memory_findings(_mem(1), [], [], gpu_memory=0)
    assert f.severity == WARNING and "nearly exhausted" in f.summary
    [f] = memory_findings({}, [], [], gpu_memory=0)
    assert f.severity == WARNING and "MemAvailable" in f.summary


def _gpu(**kw: object) -> GpuFacts:
    base: dict[str, object] = dict(
        wanted="auto", agent_gpus=None, nvidia_gpus=None, nvidia_error=None,
        cdi_nvidia=False, kfd=False,
    )  # fmt: skip
    base.update(kw)
    return GpuFacts(**base)  # type: ignore[arg-type]


def test_gpu_none_at_all_is_cpu_inference() -> None:
    for wanted in ("auto", "none"):
        [f] = judge_gpu(_gpu(wanted=wanted))
        assert f.severity == OK and "CPU inference" in f.summary


def test_gpu_nvidia_wanted_but_missing_or_without_cdi() -> None:
    [f] = judge_gpu(_gpu(wanted="nvidia", nvidia_error="no nvidia-smi on PATH"))
    assert f.severity == PROBLEM and "no nvidia-smi on PATH" in f.summary
    [f] = judge_gpu(_gpu(wanted="nvidia", nvidia_gpus=1))
    assert f.severity == PROBLEM and "nvidia-ctk cdi generate" in (f.fix or "")
    [f] = judge_gpu(_gpu(wanted="auto", nvidia_gpus=1))
    assert f.severity == WARNING and "CDI" in f.summary  # auto: runs, on the CPU
    [f] = judge_gpu(_gpu(wanted="auto", nvidia_gpus=2, cdi_nvidia=True))
    assert f.severity == OK and "2 NVIDIA GPU(s)" in f.summary
    [f] = judge_gpu(_gpu(nvidia_gpus=1, cdi_nvidia=True, ollama_gpu_error="not found"))
    assert f.severity == PROBLEM and "ollama container does not see the GPU" in f.summary


def test_gpu_health_from_the_agent() -> None:
    sick = {"index": 0, "name": "NVIDIA H200", "vendor": "nvidia", "healthy": False,
            "health": "unhealthy", "reasons": ["XID 79 (fallen off the bus) 2m ago"]}  # fmt: skip
    hot = {"index": 1, "name": "NVIDIA H200", "vendor": "nvidia", "healthy": True,
           "health": "warning", "reasons": [], "warnings": ["temperature 85 °C"]}  # fmt: skip
    findings = judge_gpu(_gpu(agent_gpus=[sick, hot], cdi_nvidia=True))
    assert [f.severity for f in findings] == [PROBLEM, WARNING]
    assert "XID 79" in findings[0].summary and "GPU 0" in findings[0].summary
    assert "temperature 85" in findings[1].summary
    fine = {**hot, "health": "ok", "warnings": []}
    [f] = judge_gpu(_gpu(agent_gpus=[fine], cdi_nvidia=True))
    assert f.severity == OK and "1 GPU(s), healthy" in f.summary


def test_gpu_amd() -> None:
    [f] = judge_gpu(_gpu(wanted="amd"))
    assert f.severity == PROBLEM and "/dev/kfd" in f.summary
    [f] = judge_gpu(_gpu(wanted="amd", kfd=True))
    assert f.severity == OK


def test_disk_thresholds() -> None:
    assert disk_finding("/x", 100 * GB, 50 * GB).severity == OK
    f = disk_finding("/x", 100 * GB, 9 * GB)
    assert f.severity == WARNING and "under 10%" in f.summary and f.fix
    assert disk_finding("/x", 100 * GB, 2 * GB).severity == PROBLEM
    f = disk_finding("/b", 100 * GB, 50 * GB, min_free=60 * GB)
    assert f.severity == PROBLEM and "backups need" in f.summary


def test_disk_check_groups_paths_by_filesystem(tmp_path: Path) -> None:
    config = parse_config(
        f"backups:\n  enabled: true\n  directory: {tmp_path / 'backups'}\n  min_free: 1KiB\n"
    )
    ctx = Context(config, "http://127.0.0.1:1")
    findings = doctor.check_disk(ctx, containers=tmp_path / "containers")
    st = os.statvfs(tmp_path)
    assert len(findings) == 1  # both on tmp_path's filesystem (neither exists yet)
    assert f"{tmp_path / 'containers'} and {tmp_path / 'backups'}" in findings[0].summary
    expected = disk_finding("x", st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, 1024)
    assert findings[0].severity == expected.severity


def test_ollama_urls_as_open_webui_reads_them() -> None:
    assert ollama_urls({}) == ["http://ollama:11434"]
    assert ollama_urls({"OLLAMA_BASE_URL": "http://ollama:11434/"}) == ["http://ollama:11434"]
    assert ollama_urls({"OLLAMA_BASE_URL": "/ollama"}) == ["http://ollama:11434"]
    many = {"OLLAMA_BASE_URLS": "http://a:1;http://b:2", "OLLAMA_BASE_URL": "http://c:3"}
    assert ollama_urls(many) == ["http://a:1", "http://b:2"]


# --------------------------------------------------------------------------- output


FINDINGS = [
    Finding("agent", OK, "aistack-agent 0.1.0 answers"),
    Finding("memory", WARNING, "the largest model does not fit", "a smaller model"),
    Finding("webui-ollama", PROBLEM, "open-webui cannot reach Ollama", "aistack restart ollama"),
]


def test_render_markers_and_fix_lines() -> None:
    text = doctor.render(FINDINGS)
    assert text.splitlines() == [
        "✓ agent         aistack-agent 0.1.0 answers",
        "! memory        the largest model does not fit",
        "                fix: a smaller model",
        "✗ webui-ollama  open-webui cannot reach Ollama",
        "                fix: aistack restart ollama",
        "",
        "1 problem, 1 warning",
    ]
    ascii_text = doctor.render(FINDINGS, "ascii")
    assert ascii_text.splitlines()[0].startswith("+ agent")
    assert ascii_text.splitlines()[3].startswith("x webui-ollama")
    assert doctor.render(FINDINGS[:1]).endswith("no problems, 0 warnings")


def test_exit_codes_and_json() -> None:
    assert doctor.exit_code(FINDINGS) == 1
    assert doctor.exit_code(FINDINGS[:2]) == 0  # warnings alone are not a failure
    assert doctor.exit_code([]) == 0
    doc = doctor.to_json(FINDINGS)
    assert doc["problems"] == 1 and doc["warnings"] == 1
    assert doc["findings"][0] == {
        "check": "agent", "severity": "ok", "summary": "aistack-agent 0.1.0 answers", "fix": None,
    }  # fmt: skip
    json.dumps(doc)  # serialisable as is
