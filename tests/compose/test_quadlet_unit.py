"""The quadlet key table and the unit-file model: versions, quoting, escaping, rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.quadlet import (
    FIRST_QUADLET,
    PodmanVersion,
    UnitFile,
    UnitValueError,
    first_version,
    keys_for,
    quote_word,
    section_since,
    supports,
)
from agent.quadlet.keys import KEY_TABLE, UNRELEASED, releases

REFERENCE = Path("/work/shared/reference/quadlet-keys-by-version.md")


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference file is not here")
def test_table_matches_the_reference_exactly() -> None:
    text = REFERENCE.read_text()
    reference = {}
    for block in re.finditer(r"\*\*\[(\w+)\]\*\*(.*?)(?=\*\*\[|\Z)", text, re.S):
        for row in re.finditer(r"^\| (v[\d.]+|main[^|]*) \| ([^|]+) \|$", block[2], re.M):
            version = UNRELEASED if row[1].startswith("main") else PodmanVersion.parse(row[1])
            for key in row[2].split(","):
                reference[(block[1], key.strip())] = version
    ours = {(s, k): v for s, rows in KEY_TABLE.items() for v, keys in rows for k in keys.split()}
    assert ours == reference


def test_versions_parse_and_compare() -> None:
    assert PodmanVersion.parse("5") == PodmanVersion(5, 0)
    assert PodmanVersion.parse("v4.9.3") == PodmanVersion(4, 9)
    assert PodmanVersion.from_podman_output("podman version 5.4.2\n") == PodmanVersion(5, 4)
    assert PodmanVersion.from_podman_output("nothing") is None
    assert PodmanVersion(4, 10) > PodmanVersion(4, 9)
    assert str(PodmanVersion(5, 0)) == "5.0" and str(UNRELEASED) == "main (unreleased)"
    for bad in ("", "five", "5.x", "4.9.3.1"):
        with pytest.raises(ValueError):
            PodmanVersion.parse(bad)


def test_keys_by_version() -> None:
    v44, v50, v55 = PodmanVersion(4, 4), PodmanVersion(5, 0), PodmanVersion(5, 5)
    assert "Image" in keys_for("Container", v44)
    assert "HealthCmd" not in keys_for("Container", v44)
    assert "HealthCmd" in keys_for("Container", PodmanVersion(4, 5))
    assert "Memory" not in keys_for("Container", v50) and "Memory" in keys_for("Container", v55)
    assert keys_for("Pod", PodmanVersion(4, 9)) == frozenset()
    assert first_version("Container", "NetworkAlias") == PodmanVersion(5, 2)
    assert first_version("Container", "NoSuchKey") is None
    assert first_version("Volume", "UID") == UNRELEASED
    assert not supports("Volume", "UID", PodmanVersion(5, 8))
    assert section_since("Build") == PodmanVersion(5, 2)
    assert releases()[0] == FIRST_QUADLET
    with pytest.raises(KeyError):
        keys_for("Service", v50)


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("plain", "plain"),
        ("a=b,c:d/e", "a=b,c:d/e"),
        ("with space", '"with space"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
        ("grüße", "grüße"),
    ],
)
def test_quote_word(word: str, written: str) -> None:
    assert quote_word(word) == written


def test_words_that_cannot_be_written() -> None:
    with pytest.raises(UnitValueError, match="empty"):
        quote_word("")
    with pytest.raises(UnitValueError, match="separator"):
        quote_word(";")
    assert quote_word(";", exec_line=True) == "\\;"


def test_specifiers_and_dollars_are_escaped_where_they_would_be_expanded() -> None:
    unit = UnitFile("a.container")
    unit.add("Container", "Environment", ["A=50% of $HOME"])
    unit.add("Container", "HealthCmd", "echo $HOME 100%")
    unit.add("Unit", "Description", "100% $real")
    unit.add("Service", "ExecStartPre", ["/bin/echo", "$X", "a b"])
    text = unit.render()
    assert 'Environment="A=50%% of $$HOME"' in text
    assert "HealthCmd=echo $$HOME 100%%" in text
    assert "Description=100%% $real" in text  # no $ expansion outside command lines
    assert 'ExecStartPre=/bin/echo $$X "a b"' in text


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("two\nlines", "line break"),
        (" leading", "whitespace"),
        ("trailing\\", "backslash"),
        ('"quoted"', "double quote"),
        ('ends with "quote"', "double quote"),
    ],
)
def test_raw_values_that_cannot_be_written(value: str, why: str) -> None:
    with pytest.raises(UnitValueError, match=why):
        UnitFile("a.container").add("Container", "HealthCmd", value)


def test_list_keys_keep_backslashes_so_refuse_them() -> None:
    unit = UnitFile("a.container")
    unit.add("Container", "AddCapability", ["NET_ADMIN", "SYS_TIME"])
    assert unit.values("Container", "AddCapability") == ["NET_ADMIN SYS_TIME"]
    with pytest.raises(UnitValueError):
        unit.add("Container", "AddDevice", ["a\\b"])
    with pytest.raises(UnitValueError, match="one value"):
        unit.add("Container", "Image", ["a", "b"])


def test_render_is_ordered_and_validate_reports_unknown_keys() -> None:
    unit = UnitFile("web.container", ["generated"])
    unit.add("Install", "WantedBy", "default.target")
    unit.add("Service", "Restart", "always")
    unit.add("Container", "Image", "docker.io/library/nginx")
    unit.add("Container", "Memory", "1g")
    unit.add("Container", "Bogus", "x")
    unit.add("Unit", "Description", "web")
    assert unit.render() == (
        "# generated\n\n[Unit]\nDescription=web\n\n[Container]\n"
        "Image=docker.io/library/nginx\nMemory=1g\nBogus=x\n\n[Service]\nRestart=always\n\n"
        "[Install]\nWantedBy=default.target\n"
    )
    problems = unit.validate(PodmanVersion(5, 0))
    assert [(p.key, p.since) for p in problems] == [
        ("Memory", PodmanVersion(5, 5)),
        ("Bogus", None),
    ]
    assert str(problems[0]) == "[Container] Memory: needs Podman 5.5"
    assert unit.validate(PodmanVersion(5, 5))[0].key == "Bogus"
    assert unit.main_section == "Container" and unit.stem == "web"
