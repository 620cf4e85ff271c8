"""The migration's journal: which steps are done, and what a rerun or a rollback needs.

One JSON file (default /var/lib/aistack/migrate/state.json), written atomically (tmp,
fsync, rename) after every step, so a kill -9 or a power loss leaves either the step
recorded as done or not at all; every step is safe to run again. It holds no secret.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic

STEPS = (
    "check", "quiesce", "backup", "manifest", "stop", "adopt", "config", "up", "restore", "verify",
)  # fmt: skip
DEFAULT_DIR = Path("/var/lib/aistack/migrate")


class StateError(Exception):
    pass


@dataclass
class State:
    path: Path
    compose: list[str] = field(default_factory=list)
    project: str = ""
    mode: str = "copy"
    pg_upgrade: bool = False  # PostgreSQL moves by dump and restore (a new major)
    old_stopped: bool = False  # --old-stopped: no backup or manifest through the old one
    done: dict[str, float] = field(default_factory=dict)  # step -> when it finished
    phase: str = "running"  # running, done, rolled-back, failed
    failure: str = ""
    backup: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)  # old containers, as renamed
    restart_policies: dict[str, str] = field(default_factory=dict)  # old name -> its policy
    moved: list[dict[str, Any]] = field(default_factory=list)  # what went where (adopt)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> how long it took
    config_saved: str = ""  # where the agent.yaml before the migration was kept

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
            return cls(path=path, **{k: v for k, v in known.items() if k != "path"})
        except (ValueError, TypeError, AttributeError) as exc:
            raise StateError(f"{path} is not a migrate journal ({exc}); move it away") from None

    def save(self) -> None:
        doc = {k: v for k, v in self.__dict__.items() if k != "path"}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(doc, indent=2).encode(), mode=0o600)

    def is_done(self, step: str) -> bool:
        return step in self.done

    def finish(self, step: str) -> None:
        self.done[step] = time.time()
        self.save()

    def next_step(self) -> str | None:
        return next((s for s in STEPS if s not in self.done), None)
