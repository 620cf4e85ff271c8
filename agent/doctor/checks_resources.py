"""Checks of what the models need: memory against Ollama's models, OOM kills, the GPU."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import podman_api, systemd_ctl
from ..ollama_api import OllamaClient, OllamaError
from ..stack.facts import CDI_DIRS, CDI_HINT, cdi_has_nvidia
from .context import (
    EXEC_TIMEOUT_S,
    FIX_MODEL_SIZE,
    KFD,
    MEMORY_LOW,
    PROBLEM,
    WARNING,
    Context,
    ExecTimeout,
    Finding,
    exec_run,
    human,
    not_checked,
    ok,
    parse_meminfo,
    problem,
    running,
    warn,
)


@dataclass(frozen=True)
class ModelSize:
    name: str
    size: int  # bytes: Ollama's size (/api/ps: loaded, with its cache; /api/tags: on disk)
    vram: int = 0  # /api/ps size_vram: the part in GPU memory


def memory_findings(
    meminfo: Mapping[str, int],
    installed: Sequence[ModelSize] | None,
    loaded: Sequence[ModelSize],
    gpu_memory: int | None,
) -> list[Finding]:
    """Memory against the models: the seed's "models need RAM" and "model loading slow".

    installed: None when Ollama did not answer. gpu_memory: the GPUs' total as the agent
    reports it (0: none; None: unknown). A model needs RAM for what does not fit on the GPU
    (on CPU inference, all of it); loaded models count as free-able, since Ollama unloads
    idle ones to load another.
    """
    check = "memory"
    available, total = meminfo.get("MemAvailable"), meminfo.get("MemTotal")
    if available is None or not total:
        return [not_checked(check, "no MemAvailable in /proc/meminfo", "a kernel >= 3.14")]
    head = f"{human(available)} of {human(total)} available"
    findings = []
    if available < MEMORY_LOW * total:
        fix = "podman stats --no-stream (who uses it?); " + FIX_MODEL_SIZE
        findings.append(warn(check, f"{head}: memory nearly exhausted", fix))
    gpu = bool(gpu_memory) or any(m.vram > 0 for m in loaded)
    for m in loaded:
        if gpu and m.vram < m.size:
            cpu = m.size - m.vram
            findings.append(
                warn(check, f"{m.name} runs {cpu * 100 // m.size}% on the CPU ({human(cpu)} of "
                     f"{human(m.size)} in system memory): slow", FIX_MODEL_SIZE)
            )  # fmt: skip
    if installed is None:
        note = "Ollama not answering: model sizes not compared (see services)"
        return findings or [ok(check, f"{head}; {note}")]
    if gpu and not gpu_memory:
        note = "GPU memory unknown (the agent reports none): model fit not judged"
        return findings or [ok(check, f"{head}; {note}")]
    where = f"{human(gpu_memory or 0)} GPU memory" if gpu else "CPU inference"
    loaded_names = {m.name for m in loaded}
    waiting = [m for m in installed if m.name not in loaded_names]
    if not waiting:
        note = f"{len(loaded)} model(s) loaded" if loaded else "no models installed"
        return findings or [ok(check, f"{head}; {note} ({where})")]
    big = max(waiting, key=lambda m: m.size)
    need = max(0, big.size - (gpu_memory or 0))
    freeable = sum(m.size - m.vram for m in loaded)
    if need > available + freeable:
        findings.append(
            warn(check, f"the largest model, {big.name} ({human(big.size)}), needs {human(need)} "
                 f"of RAM ({where}) but {human(available)} is available: loading it will be "
                 "very slow (swap) or fail", FIX_MODEL_SIZE)
        )  # fmt: skip
    fits = f"{head}; the largest model, {big.name} ({human(big.size)}), fits ({where})"
    return findings or [ok(check, fits)]


def _ollama_models(ctx: Context) -> tuple[list[ModelSize] | None, list[ModelSize]]:
    """(installed, loaded) from Ollama's /api/tags and /api/ps; installed is None when
    Ollama answers nowhere."""
    bases = [*ctx.service_urls("ollama", 11434), ctx.config.gpu.ollama_url.rstrip("/")]
    for base in dict.fromkeys(bases):
        ollama = OllamaClient(base, timeout=3)
        try:
            tags, ps = ollama.tags(), ollama.ps()
        except OllamaError:
            continue
        installed = [ModelSize(m.name, m.size) for m in tags]
        loaded = [ModelSize(m.name, m.size_bytes, m.vram_bytes) for m in ps]
        return installed, loaded
    return None, []


def check_memory(ctx: Context, meminfo_path: Path = Path("/proc/meminfo")) -> list[Finding]:
    """MemAvailable against Ollama's models, and containers the kernel killed for memory."""
    meminfo = parse_meminfo(meminfo_path.read_text())
    if ctx.is_enabled("ollama"):
        installed, loaded = _ollama_models(ctx)
    else:
        installed, loaded = [], []
    status = ctx.agent_status()
    gpu_memory = None
    if status is not None:
        gpu_memory = sum(int(g.get("memory_total_bytes") or 0) for g in status.get("gpus") or [])
    return [*memory_findings(meminfo, installed, loaded, gpu_memory), *_oom_findings(ctx)]


def _oom_findings(ctx: Context) -> list[Finding]:
    """OOM kills: the container's State.OOMKilled, or systemd's Result=oom-kill."""
    try:
        states = ctx.unit_states()
    except systemd_ctl.SystemdError:
        states = {}
    findings = []
    for spec in ctx.enabled():
        st = states.get(f"{spec.name}.service")
        container = ctx.inspect_or_none(spec.name)
        if (container is not None and container.oom_killed) or (
            st is not None and st.result == "oom-kill"
        ):
            fix = f"journalctl -k | grep -i oom; for Ollama: {FIX_MODEL_SIZE}"
            findings.append(problem("memory", f"{spec.name} was killed for lack of memory", fix))
    return findings


@dataclass(frozen=True)
class GpuFacts:
    """What the GPU verdict depends on: gathered by check_gpu, judged by judge_gpu."""

    wanted: str  # stack.gpu
    agent_gpus: Sequence[Mapping[str, Any]] | None  # /status gpus; None: agent not answering
    nvidia_gpus: int | None  # GPUs `nvidia-smi -L` lists; None: not run, or it failed
    nvidia_error: str | None  # why nvidia-smi listed none
    cdi_nvidia: bool  # a CDI spec for nvidia.com/gpu exists
    kfd: bool  # /dev/kfd (AMD ROCm) exists
    ollama_gpu_error: str | None = None  # nvidia-smi inside the ollama container failed: why


def judge_gpu(f: GpuFacts) -> list[Finding]:
    """No GPU with gpu: none/auto is fine (CPU inference); a GPU asked for and missing,
    unhealthy, or out of Ollama's sight is not."""
    check = "gpu"
    if f.wanted == "none":
        return [ok(check, "stack.gpu: none: CPU inference")]
    findings = []
    gpus = list(f.agent_gpus or [])
    for g in gpus:
        name = f"GPU {g.get('index', '?')} ({g.get('name') or g.get('vendor') or '?'})"
        if g.get("healthy") is False or g.get("health") == "unhealthy":
            why = "; ".join(map(str, g.get("reasons") or [])) or str(g.get("error") or "unhealthy")
            findings.append(problem(check, f"{name}: {why}", "nvidia-smi -q; an XID that needs "
                                    "a reset: reboot (or nvidia-smi -r with nothing on the GPU); "
                                    "docs/gpu.md"))  # fmt: skip
        elif g.get("health") == "warning":
            why = "; ".join(map(str, [*(g.get("reasons") or []), *(g.get("warnings") or [])]))
            findings.append(warn(check, f"{name}: {why or 'warning'}", "docs/gpu.md (health)"))
    nvidia = bool(f.nvidia_gpus) or any(g.get("vendor") == "nvidia" for g in gpus)
    amd = f.kfd or any(g.get("vendor") == "amd" for g in gpus)
    if f.wanted == "nvidia" and not nvidia:
        why = f" ({f.nvidia_error})" if f.nvidia_error else ""
        findings.append(problem(check, f"stack.gpu is nvidia but no NVIDIA GPU answers{why}",
                                "install or load the NVIDIA driver (nvidia-smi must list the "
                                "GPU), or set stack.gpu: auto"))  # fmt: skip
    elif nvidia and not f.cdi_nvidia and f.wanted in ("nvidia", "auto"):
        where = " or ".join(map(str, CDI_DIRS))
        findings.append(
            Finding(check, PROBLEM if f.wanted == "nvidia" else WARNING,
                    f"an NVIDIA GPU is present but no CDI spec for nvidia.com/gpu is in {where}: "
                    "Ollama cannot use it (CPU inference)", f"{CDI_HINT}; then: aistack up")
        )  # fmt: skip
    if f.wanted == "amd" and not amd:
        findings.append(problem(check, "stack.gpu is amd but /dev/kfd is missing",
                                "load amdgpu (modprobe amdgpu) on a GPU ROCm supports, or set "
                                "stack.gpu: auto"))  # fmt: skip
    if f.ollama_gpu_error:
        findings.append(problem(check, f"the ollama container does not see the GPU "
                                f"({f.ollama_gpu_error})", f"{CDI_HINT} (again after a driver "
                                "upgrade); then: aistack restart ollama"))  # fmt: skip
    if findings:
        return findings
    if gpus:
        names = ", ".join(str(g.get("name") or g.get("vendor")) for g in gpus)
        return [ok(check, f"{len(gpus)} GPU(s), healthy: {names}")]
    if nvidia:
        return [ok(check, f"{f.nvidia_gpus} NVIDIA GPU(s) (nvidia-smi), CDI spec present")]
    if amd:
        return [ok(check, "AMD GPU (/dev/kfd present)")]
    return [ok(check, f"no GPU (stack.gpu: {f.wanted}): CPU inference")]


def _nvidia_smi() -> tuple[int | None, str | None]:
    """(GPUs `nvidia-smi -L` lists on the host, why none)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "no nvidia-smi on PATH"
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=EXEC_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi: {exc}"
    if res.returncode != 0:
        return None, f"nvidia-smi: {(res.stdout + res.stderr).strip()[:200]}"
    return sum(line.startswith("GPU ") for line in res.stdout.splitlines()), None


def _ollama_gpu_error(ctx: Context) -> str | None:
    """The seed's `docker exec -it ollama nvidia-smi` (the CDI spec mounts it in)."""
    if not running(ctx.inspect_or_none("ollama")):
        return None  # the services check reports it
    try:
        code, out, err = exec_run(ctx.socket, "ollama", ["nvidia-smi", "-L"])
    except (podman_api.PodmanApiError, ExecTimeout):
        return None
    return None if code == 0 else (err or out or f"nvidia-smi exit {code}")[:200]


def check_gpu(ctx: Context) -> list[Finding]:
    """The agent's view of the GPUs when it runs; the driver and CDI spec on the host."""
    wanted = ctx.config.stack.gpu
    if wanted == "none":
        return judge_gpu(GpuFacts(wanted, None, None, None, False, False))
    status = ctx.agent_status()
    gpus = status.get("gpus") if status is not None else None
    count, error = _nvidia_smi() if wanted in ("nvidia", "auto") else (None, None)
    cdi = cdi_has_nvidia()
    nvidia = bool(count) or any(g.get("vendor") == "nvidia" for g in gpus or [])
    seen = _ollama_gpu_error(ctx) if nvidia and cdi and ctx.is_enabled("ollama") else None
    return judge_gpu(GpuFacts(wanted, gpus, count, error, cdi, KFD.exists(), seen))
