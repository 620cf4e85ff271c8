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


class InterpolationError(ValueError):
    """The template is invalid or a required variable is missing."""


def _braced_end(text: str, start: int) -> int:
    """Index of the `}` closing the `${` whose content starts at `start`."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError("unterminated ${...}")


def interpolate(
    text: str, lookup: Lookup, unset: set[str] | None = None, *, strict: bool = True
) -> str:
    """Expand `text`. Names of unset variables used without a default go into `unset`.

    strict=False keeps an invalid `$` as literal text (how .env files are read) instead
    of raising.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1] if j + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif match := _NAME.match(text, j + 1):
            value = lookup(match.group())
            if value is None and unset is not None:
                unset.add(match.group())
            out.append(value or "")
            i = match.end()
        elif nxt == "{":
            try:
                end = _braced_end(text, j + 2)
                out.append(_braced(text[j + 2 : end], lookup, unset, strict))
            except InterpolationError:
                if strict:
                    raise
                out.append(text[j : j + 2])
                i = j + 2
                continue
            i = end + 1
        else:
            if strict:
                raise InterpolationError(
                    f"invalid interpolation format in {text!r}: "
                    "you may need to escape any $ with another $"
                )
            out.append("$")
            i = j + 1
    return "".join(out)


def _braced(body: str, lookup: Lookup, unset: set[str] | None, strict: bool) -> str:
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
        return interpolate(s, lookup, unset, strict=strict)

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


def interpolate_tree(
    node: Any,
    lookup: Lookup,
    file: str,
    path: KeyPath = (),
    unset: dict[str, str] | None = None,
) -> Any:
    """Interpolate every string value of a YAML tree; errors name `file` and the key path.

    `unset` collects variable -> first key path where an unset variable was used.
    """
    if isinstance(node, str):
        missing: set[str] = set()
        try:
            result = interpolate(node, lookup, missing)
        except InterpolationError as exc:
            raise ComposeError(file, path, str(exc)) from None
        if unset is not None:
            for name in sorted(missing):
                unset.setdefault(name, format_path(path))
        return result
    if isinstance(node, dict):
        return {
            k: interpolate_tree(v, lookup, file, (*path, str(k)), unset) for k, v in node.items()
        }
    if isinstance(node, list):
        return [interpolate_tree(v, lookup, file, (*path, i), unset) for i, v in enumerate(node)]
    if isinstance(node, Tagged):
        return Tagged(node.tag, interpolate_tree(node.value, lookup, file, path, unset))
    return node
