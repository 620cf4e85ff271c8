"""pystemd without its package __init__: the agent loads its bindings, not lxml."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import agent.daemon  # everything the running agent imports
from pystemd import daemon
from pystemd.dbuslib import DBus
from pystemd.journal import sendv
print("lxml" in sys.modules, "pystemd.systemd1" in sys.modules)
import pystemd.systemd1  # the full library is still there for whoever wants it
print(pystemd.systemd1.Unit.__name__)
"""


def test_the_agent_imports_pystemd_bindings_without_lxml() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["False", "False", "Unit"]


def test_a_pystemd_imported_before_the_agent_is_left_as_it_is() -> None:
    probe = "import pystemd, sys; import agent; print(pystemd.SDUnit.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["Unit"]
