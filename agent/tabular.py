"""Text for people: plain-text tables for the CLI (columns padded, the last one free, no
trailing blanks) and the short age form both the CLI and the status page show."""

from __future__ import annotations


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip()
        for r in rows
    )


def age_text(seconds: float) -> str:
    """`42s`, `3m 5s`, `2h 10m`, `3d 4h`: two units at most, for a glance."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
