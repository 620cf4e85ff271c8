"""The real PostgreSQL server of tests/backup, for the probes' PostgreSQL checks."""

from tests.backup.conftest import pg_server  # noqa: F401 (a fixture, shared)
