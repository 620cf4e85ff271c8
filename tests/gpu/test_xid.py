"""XIDs: kernel log records, the /dev/kmsg reader, the tracker, the event thread's stop."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agent.gpu.procs import container_id_from_cgroup, container_of, process_name
from agent.gpu.xid import (
    KernelLog,
    XidEvent,
    XidEventThread,
    XidTracker,
    parse_kernel_record,
    pci_key,
)

from ..fixtures.gpu.fake_nvml import FakeGpu, FakeNvml
from ..fixtures.gpu.support import FIXTURES, Clock

A_ID = "3f9a1c27b6e04d5a8c1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e"
B_ID = "9b0e7d4c2a1f3e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d"
C_ID = "0123456789abcdef" * 4
D_ID = "fedcba9876543210" * 4


def test_kernel_records() -> None:
    lines = (FIXTURES / "kmsg-xid.txt").read_text().splitlines()
    found = [x for x in map(parse_kernel_record, lines) if x is not None]
    assert [(x.pci, x.xid, x.at) for x in found] == [
        ((0, 1, 0), 79, 5100.0),
        ((0, 1, 0), 13, 5200.0),
        ((0, 2, 0), 31, 5300.0),  # an older driver: "(0000:02:00)", no "PCI:"
    ]
    assert found[0].detail == "pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
    # A dmesg-style line without the kmsg prefix still parses (no timestamp).
    plain = parse_kernel_record("[  12.5] NVRM: Xid (PCI:0000:c1:00): 119, pid=1, name=x, Timeout")
    assert plain is not None and (plain.pci, plain.xid, plain.at) == ((0, 0xC1, 0), 119, None)
    assert parse_kernel_record("6,1,2,-;NVRM: GPU at PCI:0000:01:00: GPU-abc") is None


def test_pci_keys_match_across_spellings() -> None:
    assert pci_key("00000000:83:00.0") == pci_key("0000:83:00") == (0, 0x83, 0)
    assert pci_key(None) is None and pci_key("garbage") is None


def test_kernel_log_reads_only_new_records_and_keeps_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "kmsg"
    path.write_text("6,1,1,-;before the agent\n")
    log = KernelLog(path)
    log.open()
    assert log.status == "reading" and log.read() == []
    with path.open("a") as f:
        f.write("4,2,2,-;NVRM: Xid (PCI:0000:01:00): 13, x\n SUBSYSTEM=pci\n4,3,3,-;NVRM: Xi")
    assert log.read() == ["4,2,2,-;NVRM: Xid (PCI:0000:01:00): 13, x"]
    with path.open("a") as f:
        f.write("d (PCI:0000:01:00): 31, y\n")
    assert log.read() == ["4,3,3,-;NVRM: Xid (PCI:0000:01:00): 31, y"]
    log.close()


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg not readable here")
def test_real_dev_kmsg_opens_at_its_end() -> None:
    log = KernelLog()
    log.open()
    try:
        assert log.status == "reading"
        records = log.read()  # only what the kernel logged since open: usually nothing
        assert all(";" in r for r in records)
    finally:
        log.close()


def test_tracker_dedupes_across_sources_either_order() -> None:
    clock = Clock(100.0)
    tracker = XidTracker(clock, dedupe_window=30.0)
    assert tracker.record(XidEvent(13, 100.0, 0.0, "nvml", "GPU-a"))
    assert not tracker.record(XidEvent(13, 101.0, 0.0, "kernel", "GPU-a"))  # same one
    assert tracker.record(XidEvent(13, 140.0, 0.0, "kernel", "GPU-a"))  # later: a new one
    assert not tracker.record(XidEvent(13, 141.0, 0.0, "nvml", "GPU-a"))  # kernel came first
    assert tracker.record(XidEvent(13, 141.0, 0.0, "nvml", "GPU-b"))  # another GPU
    assert tracker.record(XidEvent(79, 141.0, 0.0, "kernel", None))  # unattributed
    assert tracker.counts("GPU-a") == {13: 2}
    assert tracker.counts(None) == {79: 1}
    assert [e.at for e in tracker.recent("GPU-a", since=120.0)] == [140.0]
    assert len(tracker.drain_new()) == 4 and tracker.drain_new() == []
    last = tracker.last("GPU-a")
    assert last is not None and last.source == "kernel"


def test_event_thread_stops_within_one_wait() -> None:
    fake = FakeNvml()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    thread = XidEventThread(fake, [(handle, "GPU-x")], XidTracker(), wait_ms=300)
    assert thread.start()
    deadline = time.monotonic() + 5
    while fake.waits < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.alive  # blocked inside nvmlEventSetWait_v2
    assert thread.stop(timeout=1.0)  # the wait is bounded: ends well inside a second
    assert thread.status == "stopped" and fake.event_sets[0].freed
    fake.nvmlShutdown()
    assert fake.refcount == 0


def test_event_thread_with_no_event_support_does_not_start() -> None:
    fake = FakeNvml(FakeGpu(xid_events=False))
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    thread = XidEventThread(fake, [(handle, "GPU-x")], XidTracker())
    assert not thread.start()
    assert thread.status == "unavailable: GPU-x: XID events not supported"
    assert thread.stop() and threading.active_count() >= 1


def test_event_thread_attributes_events_by_device_uuid() -> None:
    fake = FakeNvml(FakeGpu(uuid="GPU-0"), FakeGpu(uuid="GPU-1"))
    fake.nvmlInit()
    devices = [(fake.nvmlDeviceGetHandleByIndex(i), f"GPU-{i}") for i in range(2)]
    tracker = XidTracker()
    thread = XidEventThread(fake, devices, tracker, wait_ms=50)
    assert thread.start()
    fake.emit_xid(1, 31)
    deadline = time.monotonic() + 5
    while tracker.counts("GPU-1") != {31: 1} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.stop()
    assert tracker.counts("GPU-1") == {31: 1} and tracker.counts("GPU-0") == {}


@pytest.mark.parametrize(
    ("pid", "container"),
    [(4242, A_ID), (4243, A_ID), (4244, B_ID), (4245, C_ID), (4246, None), (4247, D_ID),
     (999999, None)],
)  # fmt: skip
def test_process_to_container_from_cgroup_fixtures(pid: int, container: str | None) -> None:
    assert container_of(pid, FIXTURES / "proc") == container


def test_cgroup_patterns() -> None:
    assert container_id_from_cgroup(f"0::/machine.slice/libpod-{A_ID}.scope/container") == A_ID
    assert container_id_from_cgroup(f"0::/libpod-{A_ID[:12]}.scope") is None  # not a full id
    assert container_id_from_cgroup("0::/init.scope") is None
    assert process_name(4244, FIXTURES / "proc") == "ollama_llama_se"
    assert process_name(999999, FIXTURES / "proc") is None


def test_kernel_log_falls_back_to_the_journal_when_kmsg_is_refused(tmp_path: Path) -> None:
    """Inside the agent's unit /dev/kmsg is refused (ProtectKernelLogs=yes): the reader
    follows journalctl's copy instead. A real journalctl is not needed for the logic: a
    script standing in for it (fault injection of the source) prints one record."""
    script = tmp_path / "journalctl"
    script.write_text(
        "#!/bin/sh\necho 'NVRM: Xid (PCI:0000:01:00): 79, pid=0, GPU has fallen off the bus.'\n"
        "sleep 30\n"
    )
    script.chmod(0o755)
    log = KernelLog(tmp_path / "no-kmsg")
    log.journalctl = str(script)
    log.open()
    assert log.status == "reading" and log.source == "journal"
    lines: list[str] = []
    for _ in range(100):
        lines += log.read()
        if lines:
            break
        time.sleep(0.05)
    log.close()
    assert lines == ["NVRM: Xid (PCI:0000:01:00): 79, pid=0, GPU has fallen off the bus."]
    parsed = parse_kernel_record(lines[0])
    assert parsed is not None and parsed.xid == 79


def test_kernel_log_unavailable_without_kmsg_or_journalctl(tmp_path: Path) -> None:
    log = KernelLog(tmp_path / "no-kmsg")
    log.journalctl = None
    log.open()
    assert log.status.startswith("unavailable: cannot read")
    assert log.read() == []
