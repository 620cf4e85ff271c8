"""Reading the files a compose project names, with bounds: the project is untrusted input.

A compose file can name any path (`include`, `extends.file`, `env_file`, `label_file`,
`.env`, LiteLLM's config): /dev/zero, a FIFO or a 10 GB log would hang the import or
exhaust memory. So only regular files are read, at most MAX_FILE_BYTES each, and one
import reads at most MAX_FILES files and MAX_TOTAL_BYTES in all (each file once: a
hundred services naming the same env file cost one read). A refusal names the file,
never its content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ComposeError

MAX_FILE_BYTES = 4 << 20  # a large real compose file is a few hundred KiB
MAX_FILES = 1000
MAX_TOTAL_BYTES = 64 << 20


def read_text(path: Path) -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES (newlines as Python's
    text mode gives them); anything else is a ComposeError naming the file."""
    try:
        # stat first: a device is refused without being opened (opening one can act)
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular(path)
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ComposeError(path, "(file)", "no such file") from None
    except OSError as exc:
        raise ComposeError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise _not_regular(path)
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ComposeError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ComposeError(
            path,
            "(file)",
            f"larger than {MAX_FILE_BYTES >> 20} MiB; refused (is it the right file?)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ComposeError(path, "(file)", f"not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _not_regular(path: Path) -> ComposeError:
    return ComposeError(path, "(file)", "not a regular file (a directory, device or pipe); refused")


class Reader:
    """The files one import reads: each read once, all together within the budget."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._bytes = 0

    def text(self, path: Path) -> str:
        key = os.path.abspath(path)
        if key in self._texts:
            return self._texts[key]
        if len(self._texts) >= MAX_FILES:
            raise ComposeError(
                path, "(file)", f"the project reads more than {MAX_FILES} files; refused"
            )
        text = read_text(path)
        self._bytes += len(text)
        if self._bytes > MAX_TOTAL_BYTES:
            raise ComposeError(
                path,
                "(file)",
                f"the project's files come to more than {MAX_TOTAL_BYTES >> 20} MiB; refused",
            )
        self._texts[key] = text
        return text
