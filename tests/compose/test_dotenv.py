"""The .env / env_file format as Compose reads it, and when Podman reads a file the same."""

from __future__ import annotations

import textwrap

import pytest

from agent.compose import dotenv
from agent.compose.errors import ComposeError


def parse(text: str, **env: str) -> dict[str, str]:
    return dotenv.parse(textwrap.dedent(text), "test.env", env.get)


def test_plain_lines_comments_and_export() -> None:
    assert parse("""
        # comment
        A=1
          B = spaced
        export C=exported
        D=
        """) == {"A": "1", "B": "spaced", "C": "exported", "D": ""}


def test_quotes_escapes_and_multiline() -> None:
    assert parse("""
        S='single $NOT ${NOT} \\n'
        D="double\\tdone \\"q\\" \\\\"
        M="line one
        line two"
        I=value # inline comment
        H=value#not-a-comment
        """) == {
        "S": "single $NOT ${NOT} \\n",
        "D": 'double\tdone "q" \\',
        "M": "line one\nline two",
        "I": "value",
        "H": "value#not-a-comment",
    }


def test_interpolation_uses_earlier_lines_and_the_environment() -> None:
    assert parse(
        """
        BASE=/srv
        DATA=${BASE}/data
        HOME_DIR=$HOME/x
        DEFAULT=${MISSING:-fallback}
        LITERAL=cost $5
        ESCAPED="\\$BASE"
        """,
        HOME="/home/u",
    ) == {
        "BASE": "/srv",
        "DATA": "/srv/data",
        "HOME_DIR": "/home/u/x",
        "DEFAULT": "fallback",
        "LITERAL": "cost $5",
        "ESCAPED": "$BASE",
    }


def test_bare_names_come_from_the_environment() -> None:
    assert parse("PRESENT\nABSENT\n", PRESENT="yes") == {"PRESENT": "yes"}


def test_raw_format_takes_values_literally() -> None:
    text = "A='quoted' $X # not a comment\n"
    assert dotenv.parse(text, "f", raw=True) == {"A": "'quoted' $X # not a comment"}


@pytest.mark.parametrize("text", ["not a line", "A='open", "=value", "A B=c"])
def test_malformed_lines_name_the_file_and_line(text: str) -> None:
    with pytest.raises(ComposeError) as info:
        dotenv.parse(text + "\n", "bad.env")
    assert info.value.file == "bad.env" and info.value.path == "line 1"


@pytest.mark.parametrize(
    ("text", "same"),
    [
        ("A=1\n# c\nB=two words\n", True),
        ("A=a=b\n", True),
        ("A='quoted'\n", False),
        ('A="quoted"\n', False),
        ("A=$OTHER\n", False),
        ("A=x # comment\n", False),
        ("export A=1\n", False),
        ("BARE\n", False),
        ("A=trailing \n", False),
    ],
)
def test_podman_reads_same(text: str, same: bool) -> None:
    assert dotenv.podman_reads_same(text) is same
