"""The checks before anything is touched. Each refusal names what is wrong and the fix;
one refusal means the migration does not start, and nothing on the host has changed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import podman_api
from .copy import size_text, tree_size
from .source import OldStack

MARGIN = 1 << 30  # free space left over after a copy: PostgreSQL and Podman need room too
_MAJOR_TAG = re.compile(r":(\d+)(?:[.\-_][\w.\-]*)?$")


@dataclass
class Findings:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


def pg_major_of_image(image: str, env: dict[str, str] | None) -> int | None:
    """The PostgreSQL major an image runs: its tag (postgres:16, :16.4-bookworm), else
    the PG_MAJOR its ENV sets (official images do), else unknown."""
    match = _MAJOR_TAG.search(image.split("@")[0])
    if match:
        return int(match.group(1))
    value = (env or {}).get("PG_MAJOR", "")
    return int(value) if value.isdigit() else None


def pg_version_of_data(path: Path) -> int | None:
    try:
        text = (path / "PG_VERSION").read_text().strip()
    except OSError:
        return None
    return int(text.split(".")[0]) if text.split(".")[0].isdigit() else None


def check_postgres(
    old: OldStack, image_env: dict[str, str] | None, found: Findings, pg_upgrade: bool
) -> None:
    data = old.data.get("postgres")
    if data is None:
        return
    image = str(old.stack["stack"]["postgres"]["image"])
    have = pg_version_of_data(data.path)
    want = pg_major_of_image(image, image_env)
    found.facts["postgres_data_major"] = have
    found.facts["postgres_image_major"] = want
    if have is None:
        found.refusals.append(
            f"{data.path} has no PG_VERSION: it is not a PostgreSQL data folder (the "
            f"service {data.service} mounts it at /var/lib/postgresql/data)"
        )
    elif want is None:
        found.refusals.append(
            f"cannot tell which PostgreSQL major the image {image} runs: give it a tag with "
            f"the major (postgres:{have}) or pull it first (its PG_MAJOR then says)"
        )
    elif have != want and not pg_upgrade:
        found.refusals.append(
            f"the data in {data.path} is PostgreSQL {have} (PG_VERSION) but the image "
            f"{image} runs {want}: it cannot open it. Keep the old major (image: "
            f"postgres:{have} in the compose file) or migrate through a dump and restore: "
            "aistack migrate --pg-upgrade"
        )


def check_secrets(old: OldStack, found: Findings) -> None:
    for what in old.missing_secrets:
        found.refusals.append(f"a secret the data depends on is missing: {what}")


def check_disk(old: OldStack, volumes_root: Path, found: Findings, copied: dict[str, int]) -> None:
    """Copy mode: room for every data folder in Podman's volume storage."""
    need = 0
    for role, data in old.data.items():
        size = tree_size(data.path)
        found.facts[f"{role}_bytes"] = size
        need += max(0, size - copied.get(role, 0))
    probe = volumes_root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    found.facts["needed_bytes"], found.facts["free_bytes"] = need, free
    if need + MARGIN > free:
        found.refusals.append(
            f"not enough disk for a copy: the data is {size_text(need)}, {probe} has "
            f"{size_text(free)} free (and {size_text(MARGIN)} must stay free). Free space there, "
            "or adopt the folders where they are: --data in-place"
        )


def check_holders(
    old: OldStack,
    listing: Sequence[podman_api.ContainerSummary],
    ours: set[str],
    found: Findings,
) -> None:
    """No running container but the old stack's own (`ours`, by name) may use the data."""
    for c in listing:
        if not c.running or c.name in ours:
            continue
        for source, _dest in c.mounts:
            for data in old.data.values():
                if _inside(Path(source), data.path):
                    found.refusals.append(
                        f"the container {c.name} is running with {data.path} mounted "
                        f"({source}): stop it first (podman stop {c.name}); nothing may "
                        "write the data while it moves"
                    )


def open_files_under(roots: Sequence[Path], proc: Path = Path("/proc")) -> list[str]:
    """Processes with a file open (or their working folder) under one of `roots`: what
    any engine's container (Docker's too, which Podman cannot list) holds of the data."""
    resolved = [str(r.resolve()) for r in roots]
    found = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(entry / "cwd")]
            links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue  # gone, or a kernel thread
        for link in links:
            if any(link == r or link.startswith(r + "/") for r in resolved):
                found.append(f"{comm} (pid {entry.name}) has {link} open")
                break
    return found


def check_open_files(old: OldStack, found: Findings) -> None:
    for what in open_files_under([d.path for d in old.data.values()])[:10]:
        found.refusals.append(
            f"{what}: the old stack (or something else) still uses the data; stop it "
            "(docker compose down, podman-compose down) and run again"
        )


def check_in_place(old: OldStack, found: Findings) -> None:
    if _selinux_enforcing():
        found.warnings.append(
            "SELinux is enforcing: the managed units bind the folders as they are; if a "
            "service cannot read its data, relabel it (chcon -Rt container_file_t DIR)"
        )
    for role, data in old.data.items():
        if not data.path.is_dir():
            found.refusals.append(f"{data.path} ({role}'s data) is not a directory")


def check_ports(ports: Sequence[str], published_by_old: set[str], found: Findings) -> None:
    """Each host port the managed stack publishes must be free once the old stack stops."""
    for spec in ports:
        host, _, port = spec.rpartition(":")
        host = host.strip("[]")
        if port in published_by_old:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, int(port)))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    found.refusals.append(
                        f"{spec} is in use by something else than the old stack: the "
                        "managed stack publishes it (stack.*.ports); stop that, or change "
                        "the port"
                    )


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve() == root.resolve() or root.resolve() in path.resolve().parents
    except OSError:
        return False


def _selinux_enforcing() -> bool:
    try:
        return Path("/sys/fs/selinux/enforce").read_text().strip() == "1"
    except OSError:
        return False
