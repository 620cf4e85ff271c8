"""GFS retention over verified backups: pure, with the time and the time zone injected.

Rules, all ORed:

- `keep_last` N: the N newest verified backups.
- `keep_daily|weekly|monthly|yearly` N: the newest backup of each of the N most recent
  calendar periods *that have a backup* (days, ISO weeks, months, years in the configured
  time zone). A day whose run failed has no backup and so does not use up a slot: a
  failed run can never push a good backup out of retention.
- `min_keep` N: never fewer than N verified backups are kept, and never the newest one.

Only verified backups count. An unverified backup (a later `verify` found it broken) is
deleted once a newer verified backup exists, and kept while it is the newest thing there.

Clock safety: a backup stamped more than `FUTURE_TOLERANCE` after `now` (a clock that
jumped forward while it was taken, or a `now` that jumped back) is kept and never counted,
so it can push nothing out. With a `now` before every backup nothing is deleted at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from types import MappingProxyType

FUTURE_TOLERANCE = 3600.0
BUCKETS = ("last", "daily", "weekly", "monthly", "yearly", "min_keep", "newest", "future")


@dataclass(frozen=True)
class Candidate:
    id: str
    taken_at: float  # Unix time the backup started
    verified: bool = True


@dataclass(frozen=True)
class Policy:
    keep_last: int = 7
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    keep_yearly: int = 2
    min_keep: int = 3


@dataclass(frozen=True)
class Plan:
    keep: Mapping[str, tuple[str, ...]]  # id -> reasons ("daily 2026-11-26", "last 1", ...)
    delete: tuple[str, ...]  # oldest first

    def counts(self) -> dict[str, int]:
        """How many kept backups each rule holds (a backup may count under several);
        `all` is the number of kept backups."""
        out = dict.fromkeys(BUCKETS, 0)
        for reasons in self.keep.values():
            for bucket in {r.split(" ", 1)[0] for r in reasons}:
                if bucket in out:
                    out[bucket] += 1
        out["all"] = len(self.keep)
        return out


def _period(kind: str, ts: float, tz: tzinfo) -> str:
    when = datetime.fromtimestamp(ts, tz)
    if kind == "daily":
        return when.date().isoformat()
    if kind == "weekly":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "monthly":
        return f"{when.year}-{when.month:02d}"
    return str(when.year)


def plan(candidates: Iterable[Candidate], policy: Policy, tz: tzinfo, now: float) -> Plan:
    """Decide which backups stay. Deterministic: ties on time are broken by id."""
    everything = sorted(candidates, key=lambda c: (c.taken_at, c.id), reverse=True)
    verified = [c for c in everything if c.verified]
    future = [c for c in verified if c.taken_at > now + FUTURE_TOLERANCE]
    normal = [c for c in verified if c.taken_at <= now + FUTURE_TOLERANCE]
    keep: dict[str, list[str]] = {}

    def mark(c: Candidate, reason: str) -> None:
        keep.setdefault(c.id, []).append(reason)

    for c in future:
        mark(c, "future (stamped after now: clock skew)")
    for i, c in enumerate(normal[: policy.keep_last]):
        mark(c, f"last {i + 1}")
    rules = (
        ("daily", policy.keep_daily),
        ("weekly", policy.keep_weekly),
        ("monthly", policy.keep_monthly),
        ("yearly", policy.keep_yearly),
    )
    for kind, count in rules:
        seen: set[str] = set()
        for c in normal:  # newest first: the first one met in a period is its newest
            if len(seen) >= count:
                break
            period = _period(kind, c.taken_at, tz)
            if period not in seen:
                seen.add(period)
                mark(c, f"{kind} {period}")
    if normal:
        mark(normal[0], "newest")
    for c in normal:
        if len(keep) >= policy.min_keep:
            break
        if c.id not in keep:
            mark(c, "min_keep")
    newest_verified = normal[0].taken_at if normal else None
    for c in everything:
        if c.verified:
            continue
        if newest_verified is None or c.taken_at > newest_verified:
            mark(c, "unverified, newer than any verified backup")
    delete = tuple(c.id for c in reversed(everything) if c.id not in keep)
    frozen = {k: tuple(v) for k, v in keep.items()}
    return Plan(keep=MappingProxyType(frozen), delete=delete)
