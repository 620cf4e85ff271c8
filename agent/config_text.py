"""Edits of agent.yaml's text that keep what a person wrote around them.

`aistack migrate` (the `stack:` section of a compose project) and `aistack
import-compose --into-stack` (an entry of `stack.extra`) write into a file a person
owns: the block they change is replaced whole, every other line (comments included)
stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

_TOP_KEY = re.compile(r"[A-Za-z_][\w-]*\s*:")


def replace_top_level(text: str, key: str, block: str, lead: str | None = None) -> str:
    """Replace the top-level `key:` block of a YAML text (up to the next top-level key),
    or append it. A comment line right above it starting with `lead` (the writer's own
    heading) is replaced with it."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"{key}\s*:", line)), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + block
    end = start + 1
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        end += 1
    while end > start + 1 and lines[end - 1].lstrip().startswith("#"):
        end -= 1  # a comment block just above the next key belongs to that key
    if lead and start > 0 and lines[start - 1].startswith(lead):
        start -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def stack_section(text: str) -> dict[str, Any]:
    """The `stack:` section of agent.yaml's text as data ({} when absent)."""
    data = yaml.safe_load(text) if text.strip() else None
    stack = data.get("stack") if isinstance(data, Mapping) else None
    return dict(stack) if isinstance(stack, Mapping) else {}


def with_extra(text: str, entry: Mapping[str, Any]) -> str:
    """agent.yaml's text with `entry` in `stack.extra` (replacing the entry of the same
    project, else appended); the `stack:` block is written anew, the rest kept."""
    stack = stack_section(text)
    entries = [e for e in stack.get("extra") or [] if isinstance(e, Mapping)]
    project = entry.get("project")
    at = next((i for i, e in enumerate(entries) if e.get("project") == project), None)
    if at is None:
        entries.append(dict(entry))
    else:
        entries[at] = dict(entry)
    stack["extra"] = entries
    block = yaml.safe_dump({"stack": stack}, sort_keys=False, default_flow_style=False, width=100)
    return replace_top_level(text, "stack", block)
