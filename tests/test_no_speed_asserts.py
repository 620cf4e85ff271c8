"""Tests assert behaviour, never wall-clock speed: a figure a slow, busy machine can miss
belongs in benchmarks/ (which print it and exit 0). This walks every test module and
fails on an `assert` that compares a measured duration: the difference of two clock
reads (time.monotonic, perf_counter, time, and their _ns forms). A deadline that only
bounds a wait (a hang guard) is not an assertion and stays allowed."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}


def _is_clock(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCKS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
    )


class _Finder(ast.NodeVisitor):
    """Per function: names bound to a clock read, names bound to a difference of two,
    and the asserts that compare such a difference."""

    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.durations: set[str] = set()
        self.found: list[int] = []

    def _clocky(self, node: ast.AST) -> bool:
        return _is_clock(node) or (isinstance(node, ast.Name) and node.id in self.reads)

    def _duration(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.durations
        return (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Sub)
            and self._clocky(node.left)
            and self._clocky(node.right)
        )

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if _is_clock(node.value):
            self.reads.update(names)
        elif self._duration(node.value):
            self.durations.update(names)
        self.generic_visit(node)

    def visit_Assert(self, node: ast.Assert) -> None:
        for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
            sides = [compare.left, *compare.comparators]
            if any(self._duration(side) for side in sides):
                self.found.append(node.lineno)


def speed_asserts(source: str) -> list[int]:
    """Line numbers of asserts on a measured duration in one module's source."""
    lines: list[int] = []
    for func in ast.walk(ast.parse(source)):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            finder = _Finder()
            finder.visit(func)
            lines += finder.found
    return sorted(set(lines))


def test_the_finder_catches_the_shapes_it_is_for() -> None:
    bad = """
import time
def test_a():
    started = time.monotonic()
    work()
    took = time.monotonic() - started
    assert took < 5
def test_b():
    t0 = time.perf_counter()
    assert time.perf_counter() - t0 < 1.5, "too slow"
"""
    good = """
import time
def test_c():
    deadline = time.monotonic() + 30  # a hang guard
    while time.monotonic() < deadline:
        pass
    assert stamp > time.time() - 60 or view.next_run_at - time.time() <= 3600
"""
    assert speed_asserts(bad) == [7, 10]
    assert speed_asserts(good) == []


def test_no_test_asserts_wall_clock_speed() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line in speed_asserts(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "move speed to benchmarks/, assert behaviour: " + ", ".join(offenders)
