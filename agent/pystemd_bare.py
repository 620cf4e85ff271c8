"""pystemd's C bindings without its package `__init__`.

pystemd's `__init__` imports its high-level `Unit`/`Manager` classes and, with them,
lxml: about 5 MB of the agent's resident memory (51.7 -> 46.7 MB, A/B), for XML
introspection the agent never does. The agent uses only the bindings: D-Bus calls
(`pystemd.dbuslib`, in systemd_ctl and the unit-signal watcher), sd_notify
(`pystemd.daemon`) and the journal (`pystemd.journal`). Registering the package without
running its `__init__` lets those load alone; `import pystemd.systemd1` still works
(a submodule import), so nothing that wants the full library is refused.
"""

from __future__ import annotations

import importlib.util
import sys


def install() -> None:
    """Register `pystemd` as a bare package, once, unless it is imported already."""
    if "pystemd" in sys.modules:
        return
    spec = importlib.util.find_spec("pystemd")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the import that needs it names the package to install
    sys.modules["pystemd"] = importlib.util.module_from_spec(spec)
