"""Malformed compose projects fail with exit 65 and a message naming the file and key path.

Each directory under invalid/ holds a broken project and `expected-error.txt`, the exact
message (fixture paths written as /srv/<name>, as in the goldens).
"""

from __future__ import annotations

import pytest

from agent.compose.errors import ComposeError
from tests.compose.golden import INVALID, UPDATE, Case, cases, run

CASES = cases(INVALID)


def test_negative_cases_exist() -> None:
    names = {c.name for c in CASES}
    for required in (
        "v1-format",
        "unknown-top-level-key",
        "required-variable-unset",
        "depends-on-cycle",
        "extends-cycle",
    ):
        assert required in names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_invalid_project_is_refused_with_file_and_key_path(case: Case) -> None:
    with pytest.raises(ComposeError) as info:
        run(case)
    message = case.public(info.value.render())
    expected_path = case.directory / "expected-error.txt"
    if UPDATE:
        expected_path.write_text(message + "\n")
    assert message + "\n" == expected_path.read_text()
    assert info.value.file and info.value.file.startswith(str(case.directory))
    assert info.value.path
