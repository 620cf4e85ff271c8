"""GPU metrics: rendered from the snapshot only, and `promtool check metrics` is clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agent.config import GpuConfig
from agent.metrics import build_registry
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.status import AgentInfo, status_document

from ..fixtures.gpu.fake_nvml import FakeGpu, FakeNvml
from ..fixtures.gpu.support import FIXTURES, make_watcher
from ..fixtures.wait import until

UUID0, UUID1 = (
    "GPU-aaaaaaaa-0000-4000-8000-000000000000",
    "GPU-bbbbbbbb-0000-4000-8000-000000000000",
)


async def _serve_ollama() -> tuple[web.AppRunner, str]:
    """A local HTTP server answering /api/ps with the recorded fixture."""
    body = (FIXTURES / "ollama-ps.json").read_bytes()

    async def ps(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/ps", ps)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _gpu_store(tmp_path: Path) -> SnapshotStore:
    """A store holding a real GPU snapshot: two fake GPUs, XIDs, Ollama with two models."""
    runner, url = await _serve_ollama()
    fake = FakeNvml(
        FakeGpu(uuid=UUID0, fan=30, clock_reasons=0x04, processes=[(4242, 6 << 30)]),
        FakeGpu(uuid=UUID1, bus_id="00000000:02:00.0", ecc_uncorrected=1, clock_reasons=0x40),
    )
    store = SnapshotStore()
    watcher = make_watcher(tmp_path, fake, store=store,
                           gpu=GpuConfig(ollama_url=url, kernel_log=False))  # fmt: skip
    try:
        await watcher.poll_once()
        fake.emit_xid(0, 13)
        fake.emit_xid(0, 13)
        fake.emit_xid(1, 79)
        await until(lambda: len(watcher.sampler.tracker.drain_new()) == 0 and  # type: ignore[union-attr]
                    sum(watcher.sampler.tracker.counts(UUID0).values()) == 2 and  # type: ignore[union-attr]
                    watcher.sampler.tracker.counts(UUID1) == {79: 1})  # type: ignore[union-attr]  # fmt: skip
        await watcher.poll_once()
    finally:
        watcher.close()
        await runner.cleanup()
    return store


async def test_gpu_metrics_from_the_snapshot(tmp_path: Path) -> None:
    store = await _gpu_store(tmp_path)
    text = generate_latest(build_registry(AgentInfo("/x"), store.latest)).decode()
    ids0 = f'gpu="0",uuid="{UUID0}"'
    ids1 = f'gpu="1",uuid="{UUID1}"'
    for line in (
        f"aistack_gpu_temperature_celsius{{{ids0}}} 51.0",
        f"aistack_gpu_memory_used_bytes{{{ids0}}} 2.147483648e+09",
        f"aistack_gpu_memory_total_bytes{{{ids0}}} 2.5769803776e+010",
        f"aistack_gpu_utilization_ratio{{{ids0}}} 0.37",
        f"aistack_gpu_power_watts{{{ids0}}} 72.5",
        f"aistack_gpu_power_limit_watts{{{ids0}}} 72.0",
        f"aistack_gpu_fan_speed_ratio{{{ids0}}} 0.3",
        f'aistack_gpu_ecc_errors_total{{gpu="1",type="uncorrected",uuid="{UUID1}"}} 1.0',
        f'aistack_gpu_ecc_errors_total{{gpu="0",type="corrected",uuid="{UUID0}"}} 0.0',
        f'aistack_gpu_xid_errors_total{{{ids0},xid="13"}} 2.0',
        f'aistack_gpu_xid_errors_total{{{ids1},xid="79"}} 1.0',
        f"aistack_gpu_healthy{{{ids0}}} 1.0",
        f"aistack_gpu_healthy{{{ids1}}} 0.0",
        f'aistack_gpu_throttled{{gpu="0",reason="power",uuid="{UUID0}"}} 1.0',
        f'aistack_gpu_throttled{{gpu="0",reason="thermal",uuid="{UUID0}"}} 0.0',
        f'aistack_gpu_throttled{{gpu="1",reason="thermal",uuid="{UUID1}"}} 1.0',
        'aistack_ollama_model_vram_bytes{model="qwen2.5:32b"} 1.7179869184e+010',
        'aistack_ollama_model_size_bytes{model="qwen2.5:32b"} 2.437312512e+010',
        'aistack_ollama_model_vram_bytes{model="llama3.1:8b"} 6.65428992e+09',
        f'aistack_gpu_info{{gpu="0",name="NVIDIA L4",pci_bus_id="00000000:01:00.0",'
        f'uuid="{UUID0}",vendor="nvidia"}} 1.0',
    ):
        assert line in text, line
    assert "aistack_gpu_fan_speed_ratio{" + ids1 not in text  # no fan: no sample, not 0


async def test_gpu_status_section(tmp_path: Path) -> None:
    store = await _gpu_store(tmp_path)
    doc = status_document(AgentInfo("/x"), store.latest())
    assert [g["uuid"] for g in doc["gpus"]] == [UUID0, UUID1]
    assert doc["gpus"][1]["healthy"] is False
    assert doc["gpus"][0]["processes"][0]["container"] == "3f9a1c27b6e0"
    gpu_source = doc["sources"]["gpu"]
    assert gpu_source["state"] == "degraded"
    ollama = gpu_source["data"]["ollama"]
    assert ollama["reachable"] is True and ollama["state"] == "degraded"
    assert [m["name"] for m in ollama["models"]] == ["llama3.1:8b", "qwen2.5:32b"]
    assert ollama["warnings"][0].startswith("model qwen2.5:32b is partly on the CPU")
    assert doc["state_reasons"][0].startswith("podman")  # a sick GPU does not degrade the stack


def _promtool(payload: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus')"
    return subprocess.run([promtool, "check", "metrics"], input=payload, capture_output=True,
                          timeout=30, check=False)  # fmt: skip


async def test_promtool_check_metrics_is_clean_on_gpu_metrics(tmp_path: Path) -> None:
    store = await _gpu_store(tmp_path)
    registry = build_registry(AgentInfo("/x"), store.latest)
    payload = generate_latest(registry)
    assert b"aistack_gpu_xid_errors_total" in payload
    proc = _promtool(payload)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == b"", proc.stdout + proc.stderr  # not even lint warnings
    # promtool reads the text format only; the OpenMetrics rendering must parse too.
    families = {
        f.name for f in text_string_to_metric_families(generate_openmetrics(registry).decode())
    }
    assert {"aistack_gpu_xid_errors", "aistack_gpu_ecc_errors", "aistack_gpu_healthy"} <= families


def test_no_gpu_snapshot_renders_empty_families_cleanly() -> None:
    store = SnapshotStore()
    store.publish(SourceSnapshot("gpu", SourceState.UNAVAILABLE, "no GPU found", {"gpus": []}))
    payload = generate_latest(build_registry(AgentInfo("/x"), store.latest))
    assert b"aistack_gpu_temperature_celsius{" not in payload
    proc = _promtool(payload)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == b"", proc.stdout + proc.stderr


def test_a_scrape_never_calls_nvml() -> None:
    """The collector reads the store; a registry with no GPU snapshot at all renders too."""
    store = SnapshotStore()
    text = generate_latest(build_registry(AgentInfo("/x"), store.latest)).decode()
    assert "# TYPE aistack_gpu_healthy gauge" in text
