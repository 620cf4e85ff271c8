"""The stack's secrets: generated once, kept root-only, handed to containers as Podman secrets.

Each secret is a 0600 file in /etc/aistack/secrets (0700), so the admin can read it, and a
Podman secret `aistack-<name>` that units reference with `Secret=...,type=env`: values
never appear in unit files, `systemctl cat`, logs or /status. Provider keys
(OPENAI_API_KEY...) are files the admin puts there; the rest are generated.
"""

from __future__ import annotations

import hashlib
import secrets as random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import podman_api
from ..atomic import write_atomic
from ..config import StackConfig

SECRETS_DIR = Path("/etc/aistack/secrets")


@dataclass(frozen=True)
class SecretSpec:
    name: str  # file name in SECRETS_DIR; the Podman secret is aistack-<name>
    users: tuple[str, ...]  # services to restart when it changes
    generate: Callable[[], str] | None  # None: derived from others, or given by the admin


def _token() -> str:
    return random.token_urlsafe(32)


GENERATED = (
    SecretSpec("postgres-password", ("postgres", "litellm"), _token),
    SecretSpec("litellm-master-key", ("litellm", "open-webui"), lambda: "sk-" + _token()),
    SecretSpec("webui-secret-key", ("open-webui",), _token),
)


class SecretsError(Exception):
    pass


class SecretStoreUnavailable(SecretsError):
    """Podman could not store a secret (its API is down): the request was sound."""


def podman_name(name: str) -> str:
    return f"aistack-{name}"


def _database_url(stack: StackConfig, password: str) -> str:
    pg = stack.postgres
    return f"postgresql://{pg.user}:{password}@postgres:5432/{pg.database}"


def desired(stack: StackConfig, directory: Path = SECRETS_DIR) -> dict[str, tuple[str, ...]]:
    """Secret name -> the services that use it, for what the config enables."""
    wanted: dict[str, tuple[str, ...]] = {}
    if stack.postgres.enabled:
        wanted["postgres-password"] = ("postgres", "litellm")
    if stack.litellm.enabled:
        wanted["litellm-master-key"] = ("litellm", "open-webui")
        if stack.postgres.enabled:  # without it LiteLLM runs with no database
            wanted["litellm-database-url"] = ("litellm",)
        for key in stack.litellm.provider_keys:
            wanted[f"provider-{key.lower()}"] = ("litellm",)
    if stack.open_webui.enabled:
        wanted["webui-secret-key"] = ("open-webui",)
        wanted.setdefault("litellm-master-key", ("litellm", "open-webui"))
    return wanted


def ensure(stack: StackConfig, socket: Path, directory: Path = SECRETS_DIR) -> set[str]:
    """Create what is missing (files, then Podman secrets); return the services whose
    secrets changed (they need a restart to see them). Never prints a value."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    wanted = desired(stack, directory)
    changed_services: set[str] = set()
    values: dict[str, str] = {}
    for spec in GENERATED:
        if spec.name not in wanted:
            continue
        path = directory / spec.name
        if not path.exists():
            assert spec.generate is not None
            write_atomic(path, spec.generate().encode(), mode=0o600)
        values[spec.name] = path.read_text().strip()
    if "litellm-database-url" in wanted:
        url = _database_url(stack, values["postgres-password"])
        path = directory / "litellm-database-url"
        if not path.exists() or path.read_text().strip() != url:
            write_atomic(path, url.encode(), mode=0o600)
        values["litellm-database-url"] = url
    for key in stack.litellm.provider_keys if stack.litellm.enabled else ():
        path = directory / key
        if not path.is_file() or not path.read_text().strip():
            raise SecretsError(
                f"stack.litellm.provider_keys names {key}, but {path} does not exist or is "
                f"empty: put the key there (echo -n 'sk-...' > {path}; chmod 600 {path})"
            )
        values[f"provider-{key.lower()}"] = path.read_text().strip()
    for name, users in wanted.items():
        value = values[name].encode()
        stamp = directory / f".{name}.synced"
        fingerprint = _fingerprint(value)
        synced = stamp.exists() and stamp.read_text() == fingerprint
        try:
            if synced and podman_api.secret_exists(socket, podman_name(name)):
                continue
            podman_api.secret_create(socket, podman_name(name), value, replace=True)
        except podman_api.PodmanApiError as exc:
            raise SecretStoreUnavailable(
                f"cannot store secret {podman_name(name)} in Podman: {exc}"
            ) from None
        write_atomic(stamp, fingerprint.encode(), mode=0o600)
        changed_services.update(users)
    return changed_services


def rotate(name: str, stack: StackConfig, socket: Path, directory: Path = SECRETS_DIR) -> set[str]:
    """Replace one generated secret with a new value; return the services to restart."""
    spec = next((s for s in GENERATED if s.name == name), None)
    if spec is None or spec.generate is None:
        names = ", ".join(s.name for s in GENERATED)
        raise SecretsError(f"cannot rotate {name!r}: rotatable secrets are {names}")
    if name == "postgres-password":
        raise SecretsError(
            "rotating postgres-password needs the database's own password changed too "
            "(ALTER ROLE); not done automatically"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(directory / name, spec.generate().encode(), mode=0o600)
    except OSError as exc:
        raise SecretsError(f"cannot write {directory / name}: {exc.strerror}") from None
    return ensure(stack, socket, directory) | set(spec.users)


def known_values(directory: Path = SECRETS_DIR) -> list[str]:
    """Every secret value on file, for redacting them from what a service printed (the
    journal's last words in /status). Unreadable files are skipped: redaction is a net,
    the files' own modes are the guard."""
    values = []
    try:
        files = [p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file()]
    except OSError:
        return []
    for path in files:
        try:
            value = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if value:
            values.append(value)
    return values


def _fingerprint(value: bytes) -> str:
    """What was last stored in Podman (a hash, 0600 like the value): Podman never gives a
    secret's value back, so this is how an unchanged secret is left alone."""
    return hashlib.sha256(b"aistack-secret-stamp\0" + value).hexdigest()
