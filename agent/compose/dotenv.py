"""`.env` and `env_file` files as Compose reads them, and whether Podman reads one the same.

Compose's format (compose-go's dotenv): `KEY=VALUE` lines, optional `export ` prefix,
`#` comment lines, an unquoted value ends at ` #` (inline comment) and is trimmed,
`'single quoted'` values are literal, `"double quoted"` ones understand `\\n`, `\\t`,
`\\\\`, `\\"`; both may span lines; unquoted and double-quoted values are interpolated
(`${VAR}`, `$VAR`, defaults...) from the variables defined above and the environment.
A bare `KEY` line takes KEY from the environment (and is skipped when it is unset).

Podman's `--env-file` (what quadlet's `EnvironmentFile=` becomes) only splits each line
at the first `=`: no quotes, no interpolation, no inline comments. A file is handed to
Podman as-is only when both readings agree (`podman_reads_same`); otherwise its values
are resolved here, which is what Compose does anyway when it starts the containers.

An env file may be any file (`env_file: /etc/shadow`), so a malformed line is named by
its number, never quoted, and the values of one file may come to at most MAX_LENGTH
characters once interpolated (`B=${A}${A}`, `C=${B}${B}`... doubles on every line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from . import files
from .errors import ComposeError, shown
from .interpolate import MAX_LENGTH, InterpolationError, interpolate

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$$"}


def parse(
    text: str,
    file: Path | str,
    lookup: Callable[[str], str | None] = lambda _: None,
    *,
    raw: bool = False,
) -> dict[str, str]:
    """KEY -> value, in file order. `lookup` resolves variables not defined in the file.

    raw=True reads Compose's `format: raw` (every line KEY=VALUE, taken literally).
    """
    values: dict[str, str] = {}
    left = MAX_LENGTH

    def resolve(name: str) -> str | None:
        found = lookup(name)
        return found if found is not None else values.get(name)

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].lstrip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if raw:
            key, sep, value = line.partition("=")
            if not sep or not _KEY.fullmatch(key):
                raise ComposeError(file, f"line {lineno}", "expected KEY=VALUE")
            values[key] = value
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        match = _KEY.match(line)
        if not match:
            raise ComposeError(file, f"line {lineno}", "expected KEY=VALUE")
        key, rest = match.group(), line[match.end() :].lstrip(" \t")
        if not rest or rest.startswith("#"):
            found = lookup(key)
            if found is not None:
                values[key] = found
            continue
        if rest[0] not in "=:":
            raise ComposeError(file, f"line {lineno}", "expected '=' after the variable name")
        rest = rest[1:].lstrip(" \t")
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            # a quoted value may continue on the following lines until its closing quote;
            # each line is scanned once (resuming where the last scan stopped)
            end, resume = _closing(body, quote, 0)
            while end < 0 and i < len(lines):
                body += "\n" + lines[i]
                i += 1
                end, resume = _closing(body, quote, resume)
            if end < 0:
                raise ComposeError(
                    file, f"line {lineno}", f"{shown(key)}: unterminated {quote} quote"
                )
            inner = body[:end]
            if quote == "'":
                values[key] = inner
                continue
            inner = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), inner)
        else:
            inner = re.split(r"\s#", rest, maxsplit=1)[0].strip()
        try:
            values[key] = interpolate(inner, resolve, strict=False, limit=left)
        except InterpolationError as exc:
            raise ComposeError(file, f"line {lineno}", f"{shown(key)}: {exc}") from None
        left -= len(values[key])
    return values


def _closing(body: str, quote: str, start: int) -> tuple[int, int]:
    """(index of the unescaped closing quote in body at or after `start`, or -1; where
    to resume the scan once more text is appended)."""
    i = start
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i, i
        i += 1
    return -1, i


def load(
    path: Path, lookup: Callable[[str], str | None] = lambda _: None, *, raw: bool = False
) -> dict[str, str]:
    """Read (bounded, regular files only) and parse one env file."""
    return parse(files.read_text(path), path, lookup, raw=raw)


def podman_reads_same(text: str) -> bool:
    """Whether Podman's --env-file reading of `text` equals Compose's.

    True when every non-comment line is a plain `KEY=VALUE` whose value needs none of
    Compose's extras (quotes, `$`, inline comments, escapes, surrounding blanks).
    """
    for raw_line in text.splitlines():
        line = raw_line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key) or key.startswith("export"):
            return False
        if value != value.strip() or any(c in value for c in "\"'$\\") or re.search(r"\s#", value):
            return False
    return True
