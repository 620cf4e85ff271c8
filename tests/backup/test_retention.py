"""GFS retention calendar scenarios: pure, with the clock and the time zone injected."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from agent.backup.retention import FUTURE_TOLERANCE, Candidate, Policy, plan

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
NOTHING = Policy(
    keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=1
)


def at(text: str, tz: ZoneInfo = BERLIN, fold: int = 0) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold).timestamp()


def cand(text: str, tz: ZoneInfo = BERLIN, verified: bool = True, fold: int = 0) -> Candidate:
    name = datetime.fromisoformat(text).isoformat()
    return Candidate(f"{name}{'+1' if fold else ''}", at(text, tz, fold), verified)


def daily(
    start: str, days: int, hour: str = "03:00", skip: tuple[int, ...] = ()
) -> list[Candidate]:
    first = datetime.fromisoformat(f"{start} {hour}")
    return [
        cand((first + timedelta(days=i)).isoformat(sep=" ")) for i in range(days) if i not in skip
    ]


def policy(**kw: int) -> Policy:
    base = dict(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=1)
    base.update(kw)
    return Policy(**base)


def kept(cands: list[Candidate], pol: Policy, now: str, tz: ZoneInfo = BERLIN) -> list[str]:
    return sorted(plan(cands, pol, tz, at(now, tz)).keep)


def test_01_empty_folder_keeps_and_deletes_nothing() -> None:
    result = plan([], Policy(), BERLIN, at("2026-01-01 00:00"))
    assert not result.keep and not result.delete


def test_02_daily_keeps_the_n_most_recent_days() -> None:
    cands = daily("2026-05-01", 30)
    assert kept(cands, policy(keep_daily=7), "2026-05-31 12:00") == [
        f"2026-05-{d:02d}T03:00:00" for d in range(24, 31)
    ]


def test_03_gaps_count_only_days_that_have_a_backup() -> None:
    # Runs failed on the 3rd, 4th, 6th, 7th and 8th: those days have no backup and use
    # up no slot, so keep_daily=3 reaches back to the 5th.
    cands = [cand(f"2026-05-{d:02d} 03:00") for d in (1, 2, 5, 9, 10)]
    result = plan(cands, policy(keep_daily=3), BERLIN, at("2026-05-10 12:00"))
    assert sorted(result.keep) == [f"2026-05-{d:02d}T03:00:00" for d in (5, 9, 10)]
    assert result.delete == ("2026-05-01T03:00:00", "2026-05-02T03:00:00")


def test_04_several_backups_a_day_keep_the_newest_of_the_day() -> None:
    cands = [
        cand("2026-05-01 03:00"),
        cand("2026-05-01 15:30"),
        cand("2026-05-02 03:00"),
        cand("2026-05-02 09:00"),
    ]
    assert kept(cands, policy(keep_daily=2), "2026-05-03 00:00") == [
        "2026-05-01T15:30:00",
        "2026-05-02T09:00:00",
    ]


def test_05_keep_last_counts_backups_not_days() -> None:
    cands = [cand("2026-05-01 03:00"), cand("2026-05-01 10:00"), cand("2026-05-01 11:00")]
    assert kept(cands, policy(keep_last=2), "2026-05-02 00:00") == [
        "2026-05-01T10:00:00",
        "2026-05-01T11:00:00",
    ]


def test_06_weekly_uses_iso_weeks_newest_per_week() -> None:
    cands = daily("2026-06-01", 56)  # Monday 1 June .. Sunday 26 July: 8 ISO weeks
    result = plan(cands, policy(keep_weekly=4), BERLIN, at("2026-07-26 12:00"))
    # The newest backup of each ISO week is its Sunday.
    assert sorted(result.keep) == [f"2026-07-{d:02d}T03:00:00" for d in (5, 12, 19, 26)]
    assert all(r[0].startswith("weekly 2026-W") for r in result.keep.values())


def test_07_year_boundary_iso_week_53_spans_two_years() -> None:
    # 2026-12-28 .. 2027-01-03 is ISO week 2026-W53: one weekly bucket, two yearly ones.
    cands = [cand("2026-12-31 03:00"), cand("2027-01-02 03:00")]
    weekly = plan(cands, policy(keep_weekly=1), BERLIN, at("2027-01-03 12:00"))
    assert list(weekly.keep) == ["2027-01-02T03:00:00"]
    assert weekly.keep["2027-01-02T03:00:00"][0] == "weekly 2026-W53"
    yearly = plan(cands, policy(keep_yearly=2), BERLIN, at("2027-01-03 12:00"))
    assert sorted(yearly.keep) == ["2026-12-31T03:00:00", "2027-01-02T03:00:00"]


def test_08_year_boundary_local_time_not_utc() -> None:
    # 23:30 UTC on 31 December is already 00:30 on 1 January in Berlin: a new year there.
    late = Candidate("late", at("2026-12-31 23:30", UTC))
    early = Candidate("early", at("2026-12-31 20:00", UTC))
    result = plan([early, late], policy(keep_yearly=5), BERLIN, at("2027-01-02 00:00"))
    assert result.keep["late"][0] == "yearly 2027"
    assert result.keep["early"][0] == "yearly 2026"
    in_utc = plan([early, late], policy(keep_yearly=5), UTC, at("2027-01-02 00:00"))
    assert list(in_utc.keep) == ["late"]


def test_09_monthly_keeps_newest_of_each_month() -> None:
    cands = daily("2026-01-01", 181)  # January .. June
    assert kept(cands, policy(keep_monthly=3), "2026-06-30 12:00") == [
        "2026-04-30T03:00:00",
        "2026-05-31T03:00:00",
        "2026-06-30T03:00:00",
    ]


def test_10_yearly_keeps_newest_of_each_year() -> None:
    cands = [cand(f"{y}-{m:02d}-15 03:00") for y in (2023, 2024, 2025, 2026) for m in (3, 11)]
    assert kept(cands, policy(keep_yearly=2), "2026-12-01 00:00") == [
        "2025-11-15T03:00:00",
        "2026-11-15T03:00:00",
    ]


def test_11_dst_spring_forward_buckets_by_local_day() -> None:
    # Berlin, 29 March 2026: 02:00 CET -> 03:00 CEST. 23:30 UTC on the 28th is already
    # 00:30 on the 29th in Berlin, the same local day as 01:30 CET (00:30 UTC).
    a = Candidate("a", at("2026-03-28 23:30", UTC))
    b = Candidate("b", at("2026-03-29 00:30", UTC))
    c = Candidate("c", at("2026-03-29 03:30"))  # CEST, after the jump
    d = Candidate("d", at("2026-03-28 12:00"))
    result = plan([a, b, c, d], policy(keep_daily=2), BERLIN, at("2026-03-30 00:00"))
    assert sorted(result.keep) == ["c", "d"]  # c: newest of the 29th; d: the 28th
    assert result.keep["c"][0] == "daily 2026-03-29"


def test_12_dst_fall_back_ambiguous_hour() -> None:
    # Berlin, 25 October 2026: 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    first = cand("2026-10-25 02:30", fold=0)
    second = cand("2026-10-25 02:30", fold=1)
    assert second.taken_at - first.taken_at == 3600
    day_before = cand("2026-10-24 03:00")
    result = plan([first, second, day_before], policy(keep_daily=2), BERLIN, at("2026-10-26 00:00"))
    assert sorted(result.keep) == ["2026-10-24T03:00:00", "2026-10-25T02:30:00+1"]
    assert result.delete == ("2026-10-25T02:30:00",)


def test_13_failed_days_never_push_good_backups_out() -> None:
    # Seven good days, then a week where every run failed (no backups at all): on day
    # 14 all seven good backups are still kept by keep_daily=7.
    cands = daily("2026-05-01", 7)
    result = plan(cands, policy(keep_daily=7), BERLIN, at("2026-05-14 12:00"))
    assert len(result.keep) == 7 and not result.delete


def test_14_unverified_backups_never_count() -> None:
    # The backups of the 3rd and 5th were found broken by a later verify: they take no
    # daily slot, so keep_daily=7 reaches back to the 2nd, and they go.
    good = daily("2026-05-01", 10, skip=(2, 4))
    broken = [cand(f"2026-05-{d:02d} 03:00", verified=False) for d in (3, 5)]
    result = plan(good + broken, policy(keep_daily=7), BERLIN, at("2026-05-10 12:00"))
    assert sorted(result.keep) == [f"2026-05-{d:02d}T03:00:00" for d in (2, 4, 6, 7, 8, 9, 10)]
    assert result.delete == ("2026-05-01T03:00:00", "2026-05-03T03:00:00", "2026-05-05T03:00:00")


def test_15_unverified_newer_than_any_verified_is_kept() -> None:
    good = cand("2026-05-01 03:00")
    broken_new = cand("2026-05-02 03:00", verified=False)
    broken_old = cand("2026-04-30 03:00", verified=False)
    result = plan([good, broken_new, broken_old], policy(), BERLIN, at("2026-05-03 00:00"))
    assert sorted(result.keep) == ["2026-05-01T03:00:00", "2026-05-02T03:00:00"]
    assert result.delete == ("2026-04-30T03:00:00",)


def test_16_min_keep_tops_up_with_the_newest() -> None:
    cands = daily("2026-05-01", 10)
    result = plan(cands, policy(min_keep=3), BERLIN, at("2026-05-10 12:00"))
    assert sorted(result.keep) == [f"2026-05-{d:02d}T03:00:00" for d in (8, 9, 10)]
    assert result.keep["2026-05-09T03:00:00"] == ("min_keep",)


def test_17_the_newest_verified_is_always_kept() -> None:
    cands = [cand("2026-05-01 03:00"), cand("2026-05-02 03:00", verified=False)]
    result = plan(cands, NOTHING, BERLIN, at("2026-05-03 00:00"))
    assert "newest" in result.keep["2026-05-01T03:00:00"]
    assert Policy().min_keep >= 1


def test_18_clock_jumped_forward_future_backup_is_kept_and_not_counted() -> None:
    # One run happened while the clock said 2031. It must not take the keep_last slots
    # of the real newest backups, and is not deleted either (we cannot tell its age).
    cands = [*daily("2026-05-01", 5), cand("2031-01-01 03:00")]
    result = plan(cands, policy(keep_last=2), BERLIN, at("2026-05-05 12:00"))
    assert sorted(result.keep) == [
        "2026-05-04T03:00:00",
        "2026-05-05T03:00:00",
        "2031-01-01T03:00:00",
    ]
    assert result.keep["2031-01-01T03:00:00"][0].startswith("future")


def test_19_clock_jumped_back_to_before_every_backup_deletes_nothing() -> None:
    cands = daily("2026-05-01", 20)
    result = plan(cands, policy(keep_last=1), BERLIN, at("2000-01-01 00:00"))
    assert not result.delete and len(result.keep) == 20


def test_20_clock_stepped_back_during_runs_orders_by_time_and_stays_deterministic() -> None:
    # The host's clock went back a day after the run of the 5th: the next run is stamped
    # with the 4th again. Both are real backups; order is by time, ties by id.
    cands = [*daily("2026-05-01", 5), Candidate("rerun", at("2026-05-04 03:00") + 60)]
    first = plan(cands, policy(keep_daily=2), BERLIN, at("2026-05-05 12:00"))
    second = plan(list(reversed(cands)), policy(keep_daily=2), BERLIN, at("2026-05-05 12:00"))
    assert first == second
    assert sorted(first.keep) == ["2026-05-05T03:00:00", "rerun"]


def test_21_rules_are_ored() -> None:
    cands = daily("2026-01-01", 120)  # January .. April
    result = plan(
        cands, policy(keep_last=1, keep_daily=3, keep_monthly=3), BERLIN, at("2026-04-30 12:00")
    )
    assert sorted(result.keep) == [
        "2026-02-28T03:00:00",
        "2026-03-31T03:00:00",
        "2026-04-28T03:00:00",
        "2026-04-29T03:00:00",
        "2026-04-30T03:00:00",
    ]
    assert set(result.keep["2026-04-30T03:00:00"]) >= {
        "last 1",
        "daily 2026-04-30",
        "monthly 2026-04",
    }


def test_22_default_policy_over_a_year_of_daily_backups() -> None:
    cands = daily("2025-06-01", 400)
    result = plan(cands, Policy(), BERLIN, at("2026-07-05 12:00"))
    counts = result.counts()
    assert counts["last"] == 7 and counts["daily"] == 7
    assert counts["weekly"] == 4 and counts["monthly"] == 6 and counts["yearly"] == 2
    # The 7 last (= the 7 daily: 29 June .. 5 July), 3 more Sundays (14, 21, 28 June), 4
    # more month ends (February .. May; 30 June is among the last 7), 31 December 2025.
    assert counts["all"] == len(result.keep) == 7 + 3 + 4 + 1
    assert len(result.keep) + len(result.delete) == 400


def test_23_future_tolerance_is_one_hour() -> None:
    now = at("2026-05-01 12:00")
    near = Candidate("near", now + FUTURE_TOLERANCE - 1)
    far = Candidate("far", now + FUTURE_TOLERANCE + 1)
    result = plan([near, far], policy(keep_last=1), BERLIN, now)
    assert result.keep["near"] == ("last 1", "newest")
    assert result.keep["far"][0].startswith("future")
