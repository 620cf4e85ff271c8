"""Compose import: read a docker-compose project the way Compose does, convert it to
Podman quadlet units, and report everything that could not be carried over.

`loader` turns files (+ overlays, includes, extends, profiles, interpolation, .env) into
one resolved project; `convert` turns that into `UnitFile`s plus a `Report`; `cli`
wires it to `aistack import-compose`.
"""

from .errors import EX_DATAERR, ComposeError
from .report import Report

__all__ = ["EX_DATAERR", "ComposeError", "Report"]
