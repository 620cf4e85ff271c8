"""Interpolation as the compose specification defines it, one case per line."""

from __future__ import annotations

import pytest

from agent.compose.interpolate import InterpolationError, interpolate

ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}

CASES = [
    ("plain text", "plain text"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("pre-${SET}-post", "pre-value-post"),
    ("$SET$OTHER", "valueother"),
    ("$SET.txt", "value.txt"),
    ("${UNSET}", ""),
    ("$UNSET", ""),
    ("${UNSET:-default}", "default"),
    ("${EMPTY:-default}", "default"),
    ("${SET:-default}", "value"),
    ("${UNSET-default}", "default"),
    ("${EMPTY-default}", ""),
    ("${SET:+replaced}", "replaced"),
    ("${EMPTY:+replaced}", ""),
    ("${UNSET:+replaced}", ""),
    ("${EMPTY+replaced}", "replaced"),
    ("${UNSET+replaced}", ""),
    ("${SET:?must be set}", "value"),
    ("${EMPTY?must be set}", ""),
    ("$$", "$"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("a $$ b", "a $ b"),
    ("${UNSET:-${SET}}", "value"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
    ("${UNSET:-a}${UNSET:-b}", "ab"),
    ("${UNSET:-with spaces and: colons}", "with spaces and: colons"),
    ("${UNSET:-}", ""),
    ("${_under_score:-x}", "x"),
]


@pytest.mark.parametrize(("template", "expected"), CASES)
def test_interpolation(template: str, expected: str) -> None:
    assert interpolate(template, ENV.get) == expected


ERRORS = [
    ("${UNSET:?must be set}", "required variable UNSET is missing a value: must be set"),
    ("${EMPTY:?must be set}", "required variable EMPTY is missing a value: must be set"),
    ("${UNSET?}", "required variable UNSET is missing a value"),
    ("${UNSET:?${SET} needed}", "required variable UNSET is missing a value: value needed"),
    ("echo $1", "invalid interpolation format"),
    ("trailing $", "invalid interpolation format"),
    ("${}", "invalid interpolation format"),
    ("${SET:1}", "invalid interpolation format"),
    ("${SET/a/b}", "invalid interpolation format"),
    ("${unterminated", "unterminated"),
    ("$ space", "invalid interpolation format"),
]


@pytest.mark.parametrize(("template", "message"), ERRORS)
def test_interpolation_errors(template: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$")):
        interpolate(template, ENV.get)


def test_unset_variables_are_collected_for_the_warning() -> None:
    unset: set[str] = set()
    interpolate("$A ${B} ${C:-x} ${SET}", ENV.get, unset)
    assert unset == {"A", "B"}


def test_non_strict_mode_keeps_invalid_dollars_as_text() -> None:
    assert interpolate("pa$$w0rd $1 ${SET}", ENV.get, strict=False) == "pa$w0rd $1 value"
