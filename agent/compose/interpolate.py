"""Variable interpolation exactly as Compose does it.

The compose specification (interpolation): `$VAR` and `${VAR}` are replaced by the
variable's value (an unset variable gives an empty string and a warning); inside braces
`${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?err}` (error when
unset or empty), `${VAR?err}` (error when unset), `${VAR:+replacement}` (when set and
non-empty), `${VAR+replacement}` (when set); defaults and replacements may themselves
contain interpolations (`${A:-${B}}`); `$$` is a literal `$`. Any other `$` (`$1`, a
trailing `$`, `${A:1}`) is an error in Compose ("invalid interpolation format", "you may
need to escape any $ with another $"), and so it is here: silently keeping the text
would import something Compose itself refuses.

Only string values are interpolated, never mapping keys.

Bounds, since the file and its .env are untrusted: defaults nested more than MAX_NESTING
levels deep (`${A:-${A:-...}}`) and values that grow past MAX_LENGTH once variables are
replaced (`${BIG}${BIG}...`) are errors, in strict and lenient mode alike; the braces
of a value are matched in one pass, so no value costs more than linear time per level.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ComposeError, KeyPath, format_path
from .yamlload import Tagged

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_TOKENS = re.compile(r"\$\$|\$\{|\}")

MAX_NESTING = 32
MAX_LENGTH = 16 << 20  # one value once its variables are replaced


class InterpolationError(ValueError):
    """The template is invalid or a required variable is missing."""


class InterpolationLimit(InterpolationError):
    """A bound was reached: an error even where invalid text is kept literally."""


class InterpolationTooLong(InterpolationLimit):
    """The value grows past its limit once variables are replaced."""


def _closing_braces(text: str) -> dict[int, int]:
    """For each `${`, the index its content starts at -> the index of its closing `}`
    (unterminated ones are absent). `$$` is skipped as one token, as the expansion does,
    so the pairs are those a scan from any `${` the expansion reaches would find."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "${":
            opened.append(match.end())
        elif token == "}" and opened:
            pairs[opened.pop()] = match.start()
    return pairs


def interpolate(
    text: str,
    lookup: Lookup,
    unset: set[str] | None = None,
    *,
    strict: bool = True,
    limit: int = MAX_LENGTH,
    nesting: int = 0,
) -> str:
    """Expand `text`. Names of unset variables used without a default go into `unset`.

    strict=False keeps an invalid `$` as literal text (how .env files are read) instead
    of raising. A result longer than `limit` characters, or defaults nested more than
    MAX_NESTING deep, raise InterpolationLimit.
    """
    if "$" not in text:
        return text
    if nesting > MAX_NESTING:
        raise InterpolationLimit(f"interpolation nested more than {MAX_NESTING} levels deep")
    closing = _closing_braces(text) if "${" in text else {}
    out: list[str] = []
    length = 0
    i = 0
    while i < len(text):
        if length > limit:
            raise InterpolationTooLong(
                f"the value grows past {limit} characters once variables are replaced"
            )
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            length += len(text) - i
            break
        out.append(text[i:j])
        length += j - i
        nxt = text[j + 1] if j + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            length += 1
            i = j + 2
        elif match := _NAME.match(text, j + 1):
            value = lookup(match.group())
            if value is None and unset is not None:
                unset.add(match.group())
            out.append(value or "")
            length += len(value or "")
            i = match.end()
        elif nxt == "{":
            end = closing.get(j + 2, -1)
            try:
                if end < 0:
                    raise InterpolationError("unterminated ${...}")
                body = text[j + 2 : end]
                value = _braced(body, lookup, unset, strict, limit - length, nesting)
            except InterpolationError as exc:
                if strict or isinstance(exc, InterpolationLimit):
                    raise
                out.append(text[j : j + 2])
                length += 2
                i = j + 2
                continue
            out.append(value)
            length += len(value)
            i = end + 1
        else:
            if strict:
                raise InterpolationError(
                    f"invalid interpolation format in {text!r}: "
                    "you may need to escape any $ with another $"
                )
            out.append("$")
            length += 1
            i = j + 1
    if length > limit:
        raise InterpolationTooLong(
            f"the value grows past {limit} characters once variables are replaced"
        )
    return "".join(out)


def _braced(
    body: str, lookup: Lookup, unset: set[str] | None, strict: bool, limit: int, nesting: int
) -> str:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    value = lookup(name)
    if rest == "":
        if value is None and unset is not None:
            unset.add(name)
        return value or ""
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    arg = rest[len(op) :]
    empty_counts = op.startswith(":")
    missing = value is None or (empty_counts and value == "")

    def expand(s: str) -> str:
        return interpolate(s, lookup, unset, strict=strict, limit=limit, nesting=nesting + 1)

    if op in (":-", "-"):
        return expand(arg) if missing else (value or "")
    if op in (":?", "?"):
        if missing:
            message = expand(arg)
            raise InterpolationError(
                f"required variable {name} is missing a value" + (f": {message}" if message else "")
            )
        return value or ""
    return "" if missing else expand(arg)  # ":+" / "+"


MAX_TREE_LENGTH = 64 << 20  # all the values of one file once variables are replaced


def interpolate_tree(
    node: Any,
    lookup: Lookup,
    file: str,
    path: KeyPath = (),
    unset: dict[str, str] | None = None,
) -> Any:
    """Interpolate every string value of a YAML tree; errors name `file` and the key path.

    `unset` collects variable -> first key path where an unset variable was used. The
    values of the whole tree may come to at most MAX_TREE_LENGTH characters.
    """
    return _Tree(lookup, file, unset).walk(node, path)


class _Tree:
    def __init__(self, lookup: Lookup, file: str, unset: dict[str, str] | None) -> None:
        self.lookup = lookup
        self.file = file
        self.unset = unset
        self.left = MAX_TREE_LENGTH

    def walk(self, node: Any, path: KeyPath) -> Any:
        if isinstance(node, str):
            missing: set[str] = set()
            try:
                result = interpolate(node, self.lookup, missing, limit=min(MAX_LENGTH, self.left))
            except InterpolationTooLong as exc:
                if self.left < MAX_LENGTH:
                    raise ComposeError(
                        self.file,
                        path,
                        f"the file's values grow past {MAX_TREE_LENGTH} characters once "
                        "variables are replaced; refused",
                    ) from None
                raise ComposeError(self.file, path, str(exc)) from None
            except InterpolationError as exc:
                raise ComposeError(self.file, path, str(exc)) from None
            self.left -= len(result)
            if self.unset is not None:
                for name in sorted(missing):
                    self.unset.setdefault(name, format_path(path))
            return result
        if isinstance(node, dict):
            return {k: self.walk(v, (*path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, Tagged):
            return Tagged(node.tag, self.walk(node.value, path))
        return node
