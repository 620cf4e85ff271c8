"""The conditions a benchmark ran under, printed beside its figures.

Two runs' figures compare only when their machines were alike: this says how many cores
the run had, the load average when it started and ended, memory, and whether other
processes were busy (each process's CPU over a one-second sample from /proc, this
benchmark's own process tree left out). Benchmarks print it at start and at end and
exit 0 whatever their ratios; they fail only when they could not measure.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_SHARE = 0.2  # of one core: a process above it counts as busy beside the benchmark
SAMPLE_S = 1.0


@dataclass(frozen=True)
class Busy:
    pid: int
    name: str
    share: float  # of one core, over the sample


def _ticks() -> dict[int, tuple[str, int]]:
    """pid -> (name, utime + stime in clock ticks), for every process readable now."""
    out: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone, or not ours to read
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def _own_tree() -> set[int]:
    """This process and its descendants (the benchmark's own servers and guests)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


def busy_others(sample_s: float = SAMPLE_S) -> list[Busy]:
    """Processes outside this benchmark that used more than BUSY_SHARE of a core."""
    hz = os.sysconf("SC_CLK_TCK")
    before, t0 = _ticks(), time.monotonic()
    time.sleep(sample_s)
    after, elapsed = _ticks(), time.monotonic() - t0
    mine = _own_tree()
    busy = [
        Busy(pid, name, (ticks - before[pid][1]) / hz / elapsed)
        for pid, (name, ticks) in after.items()
        if pid in before and pid not in mine
    ]
    return sorted((b for b in busy if b.share > BUSY_SHARE), key=lambda b: -b.share)


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value.split()[0]) * 1024
    return out


def describe(when: str = "start") -> str:
    """One paragraph: cores, load average, memory, busy processes beside this one."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    mem = _meminfo()
    others = busy_others()
    if others:
        shown = ", ".join(f"{b.name}[{b.pid}] {b.share:.0%}" for b in others[:5])
        busy = f"yes: {shown} of a core"
    else:
        busy = f"no (none above {BUSY_SHARE:.0%} of a core over {SAMPLE_S:.0f} s)"
    return (
        f"conditions at {when}: {usable} of {cores} cores usable, load average {load} "
        f"(1/5/15 min), memory {mem.get('MemAvailable', 0) / 2**30:.1f} of "
        f"{mem.get('MemTotal', 0) / 2**30:.1f} GiB available; other processes busy: {busy}"
    )


def print_conditions(when: str = "start") -> None:
    print(describe(when), flush=True)


if __name__ == "__main__":
    print_conditions("now")
