"""Every benchmark imports: `make bench` runs them only at the end of CI, so a renamed
name that one benchmark takes from another (real_recovery from detection) must fail here,
in the unit tests, not after half an hour."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
MODULES = sorted(p.stem for p in BENCH.glob("*.py"))


def test_the_benchmarks_are_found() -> None:
    assert {"detection", "real_recovery", "limits_guest"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_imports_without_running(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    source = (BENCH / f"{name}.py").read_text()
    assert 'if __name__ == "__main__":' in source, f"{name}.py runs on import"
    assert module.__doc__, f"{name}.py says nothing about what it measures"
