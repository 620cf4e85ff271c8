"""What the conversion could not carry over, and what the user must know or do.

Nothing may be dropped silently: every compose setting either becomes a quadlet key,
or is a `Lossy` item (blocks the import unless --allow-lossy: the result would behave
differently), or is explained by a `Note` (the result behaves the same, but something
is worth knowing), and steps the user must take are `actions`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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

    def lose(self, service: str, key: str, why: str) -> None:
        item = Item(service, key, why)
        if item not in self.lossy:
            self.lossy.append(item)

    def note(self, service: str, key: str, why: str) -> None:
        item = Item(service, key, why)
        if item not in self.notes:
            self.notes.append(item)

    def act(self, action: str) -> None:
        if action not in self.actions:
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
        return "\n".join(lines)
