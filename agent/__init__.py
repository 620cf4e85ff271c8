"""aistack: a systemd-native host agent for a self-hosted AI stack."""

from agent import pystemd_bare

__version__ = "0.1.0"

# Before any module imports pystemd: its bindings without lxml (see pystemd_bare).
pystemd_bare.install()
