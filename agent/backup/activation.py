"""Whether scheduled backups are on: `backups.enabled` (true, false or auto) and the host.

`auto`, the default, turns backups on once there is a PostgreSQL to back up: the stack's
`postgres` service is enabled in the config and has been applied (its quadlet file is in
`stack.unit_dir`). Before that, backups are off with a reason a person can read in
/status, so a host with nothing deployed is not degraded by runs that can only fail.
With `source: local` the server is the person's own: `auto` means on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import BackupConfig, StackConfig

POSTGRES_UNIT_FILE = "postgres.container"


@dataclass(frozen=True)
class Activation:
    """The decision and, when off, why (shown in /status and in refusals)."""

    on: bool
    reason: str | None = None


def decide(backups: BackupConfig, stack: StackConfig) -> Activation:
    """Reads the unit folder for `auto` (one stat); pure for true and false."""
    if backups.enabled is True:
        return Activation(True)
    if backups.enabled is False:
        return Activation(False, "backups.enabled is false")
    if backups.source == "local":
        return Activation(True)
    if not stack.postgres.enabled:
        return Activation(
            False, "backups.enabled is auto and stack.postgres is not enabled: nothing to back up"
        )
    unit = stack.unit_dir / POSTGRES_UNIT_FILE
    try:
        applied = unit.is_file()
    except OSError:
        applied = False
    if not applied:
        return Activation(
            False,
            "backups.enabled is auto and the stack's PostgreSQL is not applied yet "
            f"(no {unit}): run aistack up",
        )
    return Activation(True)
