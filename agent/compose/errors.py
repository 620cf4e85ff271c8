"""The one error type of the compose importer: malformed input, named by file and key.

A person fixing a compose file needs to know which file and which key, exactly as
`agent.config` reports problems; every ComposeError carries both. The CLI maps it to
exit status 65 (EX_DATAERR from sysexits.h: the input data was incorrect).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

EX_DATAERR = 65

KeyPath = Sequence[str | int]


# A key that may be echoed in a message: a file that is not a compose file (an
# `include: [/etc/shadow]`) must never have its text printed, so other keys are not shown.
_NAME_LIKE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NOT_SHOWN = "(not shown: not a key name)"


def name_like(key: object) -> bool:
    """Whether `key` looks like a key name, so echoing it leaks nothing else."""
    return isinstance(key, str) and bool(_NAME_LIKE.fullmatch(key))


def shown(key: object) -> str:
    """`'image'` for a key name; a placeholder for anything else (file content)."""
    return repr(key) if name_like(key) else NOT_SHOWN


def visible(text: str) -> str:
    """`text` with control characters escaped: a key holding a newline or a terminal
    escape sequence must not start a new line or repaint the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def format_path(path: KeyPath) -> str:
    """`("services", "web", "ports", 0)` -> `services.web.ports[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part) if str(part).isprintable() else repr(str(part))
            out += f".{text}" if out else text
    return out or "(top level)"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean 'image'?)` for a likely typo of a known name, else ``."""
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class ComposeError(Exception):
    """The compose project cannot be read: `file`, `path` (key path) and why."""

    def __init__(self, file: Path | str | None, path: KeyPath, message: str) -> None:
        self.file = str(file) if file is not None else None
        self.path = format_path(path) if not isinstance(path, str) else path
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return visible(f"{where}{self.path}: {self.message}")

    def as_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "path": self.path, "message": self.message}
