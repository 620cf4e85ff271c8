"""The API token: generated once, kept in a 0600 file, compared in constant time."""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import stat
from pathlib import Path

import structlog

from .atomic import write_atomic

log = structlog.get_logger(component="token")


class TokenError(Exception):
    """The token file cannot be created or read; the message names the file."""


def ensure_token(path: Path) -> str:
    """Return the token in `path`, generating it (0600) when the file does not exist.

    An existing file readable by group or others is tightened to 0600 and logged: the
    token grants every state-changing call, so it must be root's alone. A symlink or
    anything but a regular file is refused, never followed or chmodded: whoever could
    place the link would choose the token (or the file the agent tightens). The checks
    and the chmod work on one descriptor opened with O_NOFOLLOW, so nothing can be
    swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_atomic(path, (token + "\n").encode(), mode=0o600)
        except OSError as exc:
            raise TokenError(f"cannot create API token file {path}: {exc.strerror}") from None
        log.info("generated API token", path=str(path))
        return token
    except OSError as exc:
        raise TokenError(f"cannot open API token file {path}: {_why(exc)}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TokenError(f"API token file {path} is not a regular file (api.token_file)")
    with os.fdopen(fd, "rb") as f:
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning(
                "API token file was readable by others; set it to 0600",
                path=str(path),
                mode=oct(stat.S_IMODE(st.st_mode)),
            )
            try:
                os.fchmod(fd, 0o600)
            except OSError as exc:
                raise TokenError(f"cannot chmod 0600 {path}: {exc.strerror}") from None
        return _token_from(path, f.read(4096))


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symlink; refusing to follow it (point api.token_file at a regular file)"
    return exc.strerror or str(exc)


def _token_from(path: Path, raw: bytes) -> str:
    token = raw.decode("utf-8", errors="replace").strip()
    if len(token) < 16:
        raise TokenError(
            f"API token in {path} is shorter than 16 characters; delete it to regenerate"
        )
    return token


def read_token(path: Path) -> str:
    """The token in `path`, read without following a symlink (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise TokenError(f"cannot read API token file {path}: {_why(exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TokenError(f"API token file {path} is not a regular file (api.token_file)")
    with os.fdopen(fd, "rb") as f:
        return _token_from(path, f.read(4096))


def token_matches(expected: str, authorization: str | None) -> bool:
    """Check an `Authorization: Bearer <token>` header in constant time."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        # A token is ASCII; a header with other bytes (aiohttp keeps them as surrogates)
        # never matches, and must not raise.
        given = presented.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, expected.encode())
