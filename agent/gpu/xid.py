"""XID errors: NVML's event set (waited on in a thread) and the kernel log as a fallback.

An XID is the NVIDIA driver's error report for one GPU. NVML delivers most of them as
`nvmlEventTypeXidCriticalError` events; some (79, "fallen off the bus", for one) only
reach the kernel log (`NVRM: Xid ...`). Both feed one XidTracker, which drops the kernel
copy of an XID that NVML already delivered, so each XID is counted once.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors

XID_CRITICAL_ERROR = 0x8  # nvmlEventTypeXidCriticalError

# What each common XID means (NVIDIA's XID catalogue), for the reasons people read.
XID_NAMES = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup after a previous error",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping event",
    64: "ECC page retirement or row remapping failure",
    68: "video processor exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
    154: "GPU recovery action changed",
}

PciKey = tuple[int, int, int]  # (domain, bus, device): what both NVML and the kernel name

# "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off..."
# Older drivers omit "PCI:".
_KERNEL_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})"
    r"(?:\.[0-9a-fA-F])?\): (\d+)(?:, (.*))?"
)


def xid_name(xid: int) -> str:
    return XID_NAMES.get(xid, "see NVIDIA's XID catalogue")


def pci_key(bus_id: str | None) -> PciKey | None:
    """`00000000:83:00.0` (NVML, nvidia-smi) or `0000:83:00` (kernel) -> (0, 0x83, 0)."""
    if not bus_id:
        return None
    parts = bus_id.strip().split(":")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2].split(".")[0], 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class XidEvent:
    xid: int
    at: float  # monotonic seconds (the tracker's clock)
    wall: float  # Unix time, for people
    source: str  # nvml | kernel
    uuid: str | None = None  # None: could not be tied to a GPU
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "xid": self.xid,
            "meaning": xid_name(self.xid),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall)),
            "source": self.source,
            "detail": self.detail or None,
        }


@dataclass(frozen=True)
class KernelXid:
    pci: PciKey
    xid: int
    detail: str
    at: float | None  # the record's timestamp (seconds since boot), when it has one


def parse_kernel_record(record: str) -> KernelXid | None:
    """One /dev/kmsg record (`6,1234,5678901,-;NVRM: Xid ...`) or a plain log line."""
    prefix, sep, message = record.partition(";")
    at = None
    if sep:
        fields = prefix.split(",")
        if len(fields) >= 3 and fields[2].isdigit():
            at = int(fields[2]) / 1e6
    else:
        message = record
    match = _KERNEL_XID.search(message)
    if not match:
        return None
    domain, bus, device, xid, detail = match.groups()
    pci = (int(domain, 16), int(bus, 16), int(device, 16))
    return KernelXid(pci, int(xid), (detail or "").strip(), at)


class KernelLog:
    """Non-blocking reader of the kernel log from the moment it is opened on.

    /dev/kmsg when it can be read (root with CAP_SYSLOG); else the journal's copy of the
    kernel log through `journalctl --dmesg --follow`, which is what works inside the
    agent's unit (ProtectKernelLogs=yes, no capabilities). With neither, the fallback is
    reported as unavailable and NVML events remain the only XID source.
    """

    MAX_RECORDS = 10_000  # per read: bounds one poll when the log is flooded

    def __init__(self, path: Path = Path("/dev/kmsg")) -> None:
        self.path = path
        self.problem: str | None = None
        self._fd: int | None = None
        self._partial = ""
        self._journal: subprocess.Popen[bytes] | None = None
        self.journalctl = shutil.which("journalctl")

    @property
    def status(self) -> str:
        if self.problem:
            return f"unavailable: {self.problem}"
        return "reading" if self._fd is not None else "not opened"

    @property
    def source(self) -> str:
        return "journal" if self._journal is not None else str(self.path)

    def open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.problem = f"cannot read {self.path}: {exc.strerror}"
            self._open_journal()
            return
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_END)  # only what happens from now on
        self._fd, self.problem = fd, None

    def _open_journal(self) -> None:
        if self.journalctl is None:
            return
        try:
            proc = subprocess.Popen(
                [self.journalctl, "--dmesg", "--follow", "--lines=0", "--output=cat",
                 "--no-pager", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            self.problem = f"{self.problem}; journalctl: {exc.strerror}"
            return
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._journal, self._fd, self.problem = proc, proc.stdout.fileno(), None

    def read(self) -> list[str]:
        """Every record written since the last read (one line each)."""
        if self._fd is None:
            return []
        chunks: list[str] = []
        for _ in range(self.MAX_RECORDS):
            try:
                raw = os.read(self._fd, 16384)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten before we read them
                    continue
                self.problem = f"reading {self.path} failed: {exc.strerror}"
                self.close()
                break
            if not raw:  # a regular file at its end (tests), or journalctl gone
                if self._journal is not None:
                    self.problem = f"journalctl exited ({self._journal.poll()})"
                    self.close()
                break
            chunks.append(raw.decode("utf-8", "replace"))
        text = self._partial + "".join(chunks)
        lines = text.split("\n")
        self._partial = lines.pop()  # /dev/kmsg records end in "\n"; keep a torn tail
        # Continuation lines (" SUBSYSTEM=pci") start with a space: not records.
        return [line for line in lines if line and not line.startswith(" ")]

    def close(self) -> None:
        if self._journal is not None:
            proc, self._journal, self._fd = self._journal, None, None
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            return
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None


class XidTracker:
    """Every XID seen since the agent started, shared by the event thread and the poll.

    Thread-safe. The same XID reported by NVML and by the kernel log within
    `dedupe_window` seconds (same GPU, same number) counts once, whichever came first.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        dedupe_window: float = 30.0,
        keep: int = 4096,
    ) -> None:
        self.clock = clock
        self.dedupe_window = dedupe_window
        self._lock = threading.Lock()
        self._events: collections.deque[XidEvent] = collections.deque(maxlen=keep)
        self._new: list[XidEvent] = []
        self._counts: dict[str | None, collections.Counter[int]] = {}
        self._unmatched: dict[tuple[str, str, int], collections.deque[float]] = {}
        self._keep = keep

    def record(self, event: XidEvent) -> bool:
        """Count the event; False when it is the other source's copy of one already seen."""
        with self._lock:
            if event.uuid is not None:
                other = "kernel" if event.source == "nvml" else "nvml"
                pending = self._unmatched.get((other, event.uuid, event.xid))
                if pending is not None:
                    while pending and pending[0] < event.at - self.dedupe_window:
                        pending.popleft()
                    if pending and abs(pending[0] - event.at) <= self.dedupe_window:
                        pending.popleft()
                        return False
                mine = self._unmatched.setdefault(
                    (event.source, event.uuid, event.xid), collections.deque(maxlen=self._keep)
                )
                mine.append(event.at)
            self._counts.setdefault(event.uuid, collections.Counter())[event.xid] += 1
            self._events.append(event)
            if len(self._new) < self._keep:
                self._new.append(event)
            return True

    def counts(self, uuid: str | None) -> dict[int, int]:
        with self._lock:
            return dict(self._counts.get(uuid, {}))

    def recent(self, uuid: str | None, since: float) -> list[XidEvent]:
        with self._lock:
            return [e for e in self._events if e.uuid == uuid and e.at >= since]

    def last(self, uuid: str | None) -> XidEvent | None:
        with self._lock:
            for event in reversed(self._events):
                if event.uuid == uuid:
                    return event
            return None

    def drain_new(self) -> list[XidEvent]:
        """Events recorded since the previous call (for logs and the restart policy)."""
        with self._lock:
            new, self._new = self._new, []
            return new


class XidEventThread:
    """Waits on an NVML event set for XID critical errors, in its own daemon thread.

    Each wait is bounded (`wait_ms`), so stop() returns within about that long. The thread
    holds its own NVML reference (nvmlInit/nvmlShutdown are reference-counted), so the
    poll side can shut its session down without pulling the library from under a wait.
    """

    def __init__(
        self,
        nvml: Any,
        devices: Sequence[tuple[Any, str]],
        tracker: XidTracker,
        wall: Callable[[], float] = time.time,
        wait_ms: int = 500,
    ) -> None:
        self.nvml = nvml
        self.devices = list(devices)
        self.tracker = tracker
        self.wall = wall
        self.wait_ms = wait_ms
        self.status = "not started"
        self.covered: set[str] = set()  # GPUs whose XIDs arrive as events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._set: Any = None

    @property
    def thread(self) -> threading.Thread | None:
        """The waiting thread, once started (tests check that stop() ends it)."""
        return self._thread

    def start(self) -> bool:
        nvml = self.nvml
        xid_type = getattr(nvml, "nvmlEventTypeXidCriticalError", XID_CRITICAL_ERROR)
        try:
            self._set = nvml.nvmlEventSetCreate()
        except Exception as exc:
            self.status = f"unavailable: {errors.describe(exc)}"
            return False
        problems = []
        for handle, uuid in self.devices:
            try:
                if not nvml.nvmlDeviceGetSupportedEventTypes(handle) & xid_type:
                    problems.append(f"{uuid}: XID events not supported")
                    continue
                nvml.nvmlDeviceRegisterEvents(handle, xid_type, self._set)
            except Exception as exc:
                problems.append(f"{uuid}: {errors.describe(exc)}")
                continue
            self.covered.add(uuid)
        if not self.covered:
            self._free()
            self.status = "unavailable: " + ("; ".join(problems) or "no GPU")
            return False
        try:
            nvml.nvmlInit()  # the thread's own reference, released when it ends
        except Exception as exc:
            self._free()
            self.status = f"unavailable: {errors.describe(exc)}"
            return False
        self.status = f"listening on {len(self.covered)} GPU(s)"
        if problems:
            self.status += "; " + "; ".join(problems)
        self._thread = threading.Thread(target=self._run, name="aistack-gpu-xid", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end and wait for it; True when it has ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        nvml = self.nvml
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        try:
            while not self._stop.is_set():
                try:
                    data = wait(self._set, self.wait_ms)
                except Exception as exc:
                    if errors.is_timeout(exc):
                        continue
                    self.status = f"event wait failed: {errors.describe(exc)}"
                    if errors.is_session_error(exc):
                        return
                    self._stop.wait(1.0)  # a lost GPU answers at once: do not spin
                    continue
                self._handle(data)
        finally:
            self._free()
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            if self._stop.is_set():
                self.status = "stopped"

    def _handle(self, data: Any) -> None:
        xid_type = getattr(self.nvml, "nvmlEventTypeXidCriticalError", XID_CRITICAL_ERROR)
        if not int(getattr(data, "eventType", 0)) & xid_type:
            return
        event = XidEvent(
            xid=int(data.eventData),
            at=self.tracker.clock(),
            wall=self.wall(),
            source="nvml",
            uuid=self._uuid_of(getattr(data, "device", None)),
        )
        self.tracker.record(event)

    def _uuid_of(self, device: Any) -> str | None:
        if device is not None:
            try:
                uuid = self.nvml.nvmlDeviceGetUUID(device)
                return uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            except Exception:
                pass
        return self.devices[0][1] if len(self.devices) == 1 else None

    def _free(self) -> None:
        if self._set is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlEventSetFree(self._set)
            self._set = None
