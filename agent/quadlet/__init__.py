"""Quadlet support: which keys each Podman release accepts, and a model of unit files.

Quadlet (Podman's systemd generator) skips a whole unit when it meets a key it does not
know, so everything aistack writes as a quadlet file is checked against the target
Podman version first. `keys` holds that table, `unit` the file model and its quoting.
"""

from .keys import (
    FIRST_QUADLET,
    QUADLET_SECTIONS,
    PodmanVersion,
    first_version,
    keys_for,
    section_since,
    supports,
)
from .unit import UnitFile, UnitValueError, UnknownKey, quote_word

__all__ = [
    "FIRST_QUADLET",
    "QUADLET_SECTIONS",
    "PodmanVersion",
    "UnitFile",
    "UnitValueError",
    "UnknownKey",
    "first_version",
    "keys_for",
    "quote_word",
    "section_since",
    "supports",
]
