"""aistack: a systemd-native host agent for a self-hosted AI stack."""

__version__ = "0.1.0"
