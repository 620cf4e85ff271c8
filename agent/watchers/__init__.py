"""One watcher per external system; each publishes immutable snapshots to the store."""

from .base import SourceUnavailable, Watcher
from .gpu import GpuWatcher
from .podman import PodmanWatcher
from .systemd import SystemdWatcher

ALL_WATCHERS: tuple[type[Watcher], ...] = (PodmanWatcher, SystemdWatcher, GpuWatcher)

__all__ = [
    "ALL_WATCHERS",
    "GpuWatcher",
    "PodmanWatcher",
    "SourceUnavailable",
    "SystemdWatcher",
    "Watcher",
]
