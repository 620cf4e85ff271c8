"""The API token: generated once, kept in a 0600 file, compared in constant time."""

from __future__ import annotations

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
    token grants every state-changing call, so it must be root's alone.
    """
    try:
        st = path.stat()
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
        raise TokenError(f"cannot stat API token file {path}: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning(
            "API token file was readable by others; set it to 0600",
            path=str(path),
            mode=oct(stat.S_IMODE(st.st_mode)),
        )
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            raise TokenError(f"cannot chmod 0600 {path}: {exc.strerror}") from None
    return read_token(path)


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read API token file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise TokenError(
            f"API token in {path} is shorter than 16 characters; delete it to regenerate"
        )
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """Check an `Authorization: Bearer <token>` header in constant time."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())
