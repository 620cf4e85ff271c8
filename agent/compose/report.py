"""What the conversion could not carry over, and what the user must know or do.

Nothing may be dropped silently: every compose setting either becomes a quadlet key,
or is a `Lossy` item (blocks the import unless --allow-lossy: the result would behave
differently), or is explained by a `Note` (the result behaves the same, but something
is worth knowing), and steps the user must take are `actions`.

Findings are de-duplicated through sets (a project can have a hundred thousand), and
the human rendering escapes control characters: keys come from an untrusted file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import visible


@dataclass(frozen=True, order=True)
class Item:
    """One finding: the service (or `networks.x`, `volumes.x`...), the compose key, why."""

    service: str
    key: str
    why: str

    def __str__(self) -> str:
        return f"{self.service}: {self.key}: {self.why}"


@dataclass
class Report:
    lossy: list[Item] = field(default_factory=list)
    notes: list[Item] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._seen: set[object] = {
            *(("lose", i) for i in self.lossy),
            *(("note", i) for i in self.notes),
            *(("act", a) for a in self.actions),
        }

    def lose(self, service: str, key: str, why: str) -> None:
        item = Item(service, key, why)
        if ("lose", item) not in self._seen:
            self._seen.add(("lose", item))
            self.lossy.append(item)

    def note(self, service: str, key: str, why: str) -> None:
        item = Item(service, key, why)
        if ("note", item) not in self._seen:
            self._seen.add(("note", item))
            self.notes.append(item)

    def act(self, action: str) -> None:
        if ("act", action) not in self._seen:
            self._seen.add(("act", action))
            self.actions.append(action)

    def sorted(self) -> Report:
        """The same findings in a stable order (for output and golden files)."""
        return Report(sorted(self.lossy), sorted(self.notes), list(self.actions))

    def as_dict(self) -> dict[str, object]:
        return {
            "lossy": [asdict(i) for i in sorted(self.lossy)],
            "notes": [asdict(i) for i in sorted(self.notes)],
            "actions": list(self.actions),
        }

    def render(self) -> str:
        lines = []
        if self.lossy:
            lines.append("not converted (lossy):")
            lines += [f"  - {i}" for i in sorted(self.lossy)]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {i}" for i in sorted(self.notes)]
        if self.actions:
            lines.append("to do before starting the units:")
            lines += [f"  - {a}" for a in self.actions]
        return "\n".join(visible(line) for line in lines)
