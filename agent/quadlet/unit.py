"""A small model of a quadlet (systemd-style) unit file: ordered sections, repeated keys,
values written so that quadlet and systemd read back exactly what was meant.

Why the care: a value in a `.container` file passes through two parsers. Quadlet reads
it (some keys as one raw string, some split into words with quotes and C escapes, some
as a list of words that keeps backslashes) and writes it into the generated service's
`ExecStart=`, where systemd then expands `%` specifiers and `$VAR` references. So a
literal `%` must be written `%%`, a literal `$` in anything that reaches a command line
`$$`, a value with spaces must be quoted for keys that quadlet splits and must *not* be
quoted for keys it reads raw. Each key's reading is listed in `_KINDS` below (from
quadlet's source: Lookup/LookupAll read raw, LookupAllArgs/LookupLastArgs/
LookupAllKeyVal split exec-style, LookupAllStrv split list-style), and values that no
spelling can carry (an empty argument, a raw value with a newline...) raise
`UnitValueError` instead of being written wrong.

Rendering is deterministic: sections in a fixed order, keys in insertion order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .keys import QUADLET_SECTIONS, SECTION_FOR_SUFFIX, PodmanVersion, first_version


class Kind(enum.Enum):
    """How the reader of a key splits its value."""

    RAW = "raw"  # one string: trimmed, single line, no trailing backslash
    WORDS = "words"  # exec-style words: quotes removed, C escapes applied
    LIST = "list"  # whitespace-separated list: quotes removed, backslashes kept
    EXEC = "exec"  # a systemd command line (Exec*= in [Service]): words, `;` separates


class UnitValueError(ValueError):
    """A value that cannot be written so the reader gets it back unchanged."""


# Keys whose value quadlet splits into words, per quadlet section ("*" = every section).
_WORD_KEYS: dict[str, frozenset[str]] = {
    "*": frozenset({"PodmanArgs", "GlobalArgs", "Label"}),
    "Container": frozenset(
        {
            "Exec",
            "Environment",
            "Annotation",
            "EnvironmentFile",
            "Secret",
            "Mount",
            "Mask",
            "Unmask",
        }
    ),
    "Network": frozenset({"Options"}),
    "Build": frozenset({"Environment", "Annotation", "Secret"}),
    "Kube": frozenset(),
}
_LIST_KEYS: dict[str, frozenset[str]] = {
    "Container": frozenset(
        {"AddDevice", "AddCapability", "DropCapability", "Sysctl", "LogOpt", "UIDMap", "GIDMap"}
    ),
    "Kube": frozenset({"AutoUpdate", "ConfigMap", "LogOpt"}),
}
_SYSTEMD_LIST_KEYS = frozenset(
    {
        "Requires",
        "Wants",
        "After",
        "Before",
        "BindsTo",
        "PartOf",
        "Requisite",
        "Conflicts",
        "WantedBy",
        "RequiredBy",
        "UpheldBy",
        "Also",
        "Alias",
        "OnFailure",
        "OnSuccess",
        "Upholds",
        "RequiresMountsFor",
        "WantsMountsFor",
    }
)

# Canonical section order when rendering; sections not listed follow in insertion order.
_SECTION_ORDER = ("Unit", *sorted(QUADLET_SECTIONS), "Service", "Install")

_UNQUOTED_SAFE = re.compile(r"[^\s\"'\\\x00-\x1f\x7f]+")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def kind_of(section: str, key: str) -> Kind:
    """How `key` in `section` is read (by quadlet for its sections, else by systemd)."""
    if section in QUADLET_SECTIONS:
        if key in _WORD_KEYS["*"] or key in _WORD_KEYS.get(section, frozenset()):
            return Kind.WORDS
        if key in _LIST_KEYS.get(section, frozenset()):
            return Kind.LIST
        return Kind.RAW
    if key.startswith("Exec"):
        return Kind.EXEC
    if key in ("Environment", "UnsetEnvironment"):
        return Kind.WORDS
    if key in _SYSTEMD_LIST_KEYS:
        return Kind.LIST
    return Kind.RAW


def quote_word(word: str, *, exec_line: bool = False) -> str:
    """One word as systemd's exec-style splitter (and quadlet's) reads it back.

    Bare when it has nothing special, else double-quoted with C escapes. An empty word
    is refused: quadlet drops the whole value when it meets one. A lone `;` separates
    commands on a systemd command line, so it is written `\\;` there and refused in a
    quadlet key (quadlet copies it unescaped into ExecStart=).
    """
    if word == "":
        raise UnitValueError("an empty argument cannot be written (quadlet drops the value)")
    if word == ";":
        if exec_line:
            return "\\;"
        raise UnitValueError(
            "a lone ';' argument cannot be written (systemd reads it as a "
            "command separator in the generated ExecStart=)"
        )
    if _UNQUOTED_SAFE.fullmatch(word):
        return word
    out = []
    for ch in word:
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _list_item(item: str) -> str:
    """One item of a list-style value (quotes removed on reading, backslashes kept)."""
    if item == "" or '"' in item or "\\" in item or "\n" in item:
        raise UnitValueError(f"{item!r} cannot be written as a list item")
    return item if _UNQUOTED_SAFE.fullmatch(item) else f'"{item}"'


def _raw(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise UnitValueError("a value with a line break cannot be written")
    if value != value.strip():
        raise UnitValueError("leading or trailing whitespace would be lost")
    if value.endswith("\\"):
        raise UnitValueError("a trailing backslash would join the next line")
    if value.startswith('"') or value.endswith('"'):
        raise UnitValueError("quadlet strips a double quote at the start or end of this value")
    return value


def _reaches_command_line(section: str, key: str) -> bool:
    """Quadlet copies its keys into ExecStart=; systemd expands `$VAR` on command lines."""
    return section in QUADLET_SECTIONS or key.startswith("Exec")


@dataclass(frozen=True)
class UnknownKey:
    """A key the target Podman's quadlet does not accept (it would skip the unit)."""

    section: str
    key: str
    since: PodmanVersion | None  # first release that accepts it; None: no release

    def __str__(self) -> str:
        when = f"needs Podman {self.since}" if self.since else "not a quadlet key"
        return f"[{self.section}] {self.key}: {when}"


@dataclass
class UnitFile:
    """One unit file (`web.container`, `app.network`...), built key by key."""

    name: str
    header: list[str] = field(default_factory=list)
    _sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def main_section(self) -> str | None:
        """The quadlet section this file's extension calls for (None for `.service`...)."""
        for suffix, section in SECTION_FOR_SUFFIX.items():
            if self.name.endswith(suffix):
                return section
        return None

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def add(self, section: str, key: str, value: str | Sequence[str]) -> None:
        """Append `key=value`; a sequence is a list of words (for word and list keys).

        Raises UnitValueError when the value cannot be written faithfully.
        """
        kind = kind_of(section, key)
        if isinstance(value, str):
            items: Sequence[str] = [value]
        else:
            items = list(value)
            if kind is Kind.RAW:
                raise UnitValueError(f"{key}= takes one value, not a list")
        if not items:
            raise UnitValueError(f"{key}= needs at least one value")
        if kind is Kind.RAW:
            text = _raw(items[0])
        elif kind is Kind.LIST:
            text = " ".join(_list_item(i) for i in items)
        else:
            text = " ".join(quote_word(w, exec_line=kind is Kind.EXEC) for w in items)
        text = text.replace("%", "%%")
        if _reaches_command_line(section, key):
            text = text.replace("$", "$$")
        self._sections.setdefault(section, []).append((key, text))

    @classmethod
    def parse(cls, name: str, text: str) -> UnitFile:
        """Read a hand-written unit (a template): values are kept exactly as written,
        comments are dropped. Continuation lines are not supported (templates use none)."""
        unit = cls(name)
        section = None
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", ";")):
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped[1:-1]
                unit.ensure_section(section)
                continue
            key, sep, value = stripped.partition("=")
            if section is None or not sep or stripped.endswith("\\"):
                raise UnitValueError(f"{name} line {number}: not a key=value line: {line!r}")
            unit._sections[section].append((key.strip(), value.strip()))
        return unit

    def remove(self, section: str, key: str, value_prefix: str | None = None) -> int:
        """Drop `key=` lines (those whose written value starts with value_prefix, if
        given); returns how many went."""
        lines = self._sections.get(section, [])
        keep = [
            (k, v)
            for k, v in lines
            if k != key or (value_prefix is not None and not v.startswith(value_prefix))
        ]
        self._sections[section] = keep
        return len(lines) - len(keep)

    def replace(self, section: str, key: str, values: Iterable[str]) -> None:
        """Put `key=` lines with `values` where the key's first line was (else at the end),
        dropping the old ones: a template's order survives its customisation."""
        lines = self._sections.setdefault(section, [])
        at = next((i for i, (k, _) in enumerate(lines) if k == key), len(lines))
        fresh = UnitFile(self.name)
        fresh.add_all(section, key, values)
        kept_before = [line for line in lines[:at] if line[0] != key]
        kept_after = [line for line in lines[at:] if line[0] != key]
        self._sections[section] = kept_before + fresh.lines(section) + kept_after

    def upsert(self, section: str, key: str, value: str, same: Callable[[str], bool]) -> None:
        """Write `key=value` in place of the first line of `key` whose written value
        `same` accepts (dropping any further such lines), else append it."""
        fresh = UnitFile(self.name)
        fresh.add(section, key, value)
        new = fresh.lines(section)[0]
        lines = self._sections.setdefault(section, [])
        hits = [i for i, (k, v) in enumerate(lines) if k == key and same(v)]
        if not hits:
            lines.append(new)
            return
        lines[hits[0]] = new
        for i in reversed(hits[1:]):
            del lines[i]

    def add_all(self, section: str, key: str, values: Iterable[str]) -> None:
        """One `key=` line per value."""
        for value in values:
            self.add(section, key, value)

    def ensure_section(self, section: str) -> None:
        self._sections.setdefault(section, [])

    def lines(self, section: str) -> list[tuple[str, str]]:
        """(key, written value) pairs of a section, in order."""
        return list(self._sections.get(section, []))

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self._sections.get(section, []) if k == key]

    def has(self, section: str, key: str) -> bool:
        return any(k == key for k, _ in self._sections.get(section, []))

    def sections(self) -> list[str]:
        known = [s for s in _SECTION_ORDER if s in self._sections]
        return known + [s for s in self._sections if s not in known]

    def validate(self, target: PodmanVersion) -> list[UnknownKey]:
        """Keys in quadlet sections that Podman `target` does not accept, in file order."""
        problems = []
        for section in self.sections():
            if section not in QUADLET_SECTIONS:
                continue
            for key in dict.fromkeys(k for k, _ in self._sections[section]):
                since = first_version(section, key)
                if since is None or since > target:
                    problems.append(UnknownKey(section, key, since))
        return problems

    def render(self) -> str:
        out = [f"# {line}".rstrip() for line in self.header]
        for section in self.sections():
            if out:
                out.append("")
            out.append(f"[{section}]")
            out.extend(f"{key}={value}" for key, value in self._sections[section])
        return "\n".join(out) + "\n"
