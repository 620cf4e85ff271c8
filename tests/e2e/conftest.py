"""Fixtures of the e2e suite: one booted guest per session, images loaded on demand, each
test's leftovers removed, and the guest journal of the units involved in a failure report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest


def _missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "the e2e testbed needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"the e2e testbed needs {tool} (apt-get install debootstrap systemd-container)"
    return None


@pytest.fixture(scope="session")
def testbed_host() -> None:
    """Skip (visibly) where the host cannot run the testbed."""
    if reason := _missing_requirements():
        pytest.skip(reason)


@pytest.fixture(scope="session")
def session_guest(testbed_host: None) -> Iterator[Guest]:
    """One guest for the whole session: booting costs seconds, the tests reset it between."""
    guest = testbed.boot_guest()
    try:
        yield guest
    finally:
        guest.teardown()


@pytest.fixture
def guest(session_guest: Guest) -> Iterator[Guest]:
    """The session guest, reset after the test so the next one starts clean."""
    yield session_guest
    if session_guest.alive():
        session_guest.reset()


@pytest.fixture(scope="session")
def standin_images(session_guest: Guest) -> dict[str, str]:
    """The Ollama / Open WebUI / LiteLLM stand-ins, loaded into the guest: name -> ref."""
    return {name: testbed.ensure_image(session_guest, name) for name in testbed.STANDIN_NAMES}


@pytest.fixture(scope="session")
def agent_deb(testbed_host: None) -> Path:
    """The deb of this checkout, built once per session: the testbed installs the agent
    the way users do."""
    return testbed.build_deb()


@pytest.fixture(scope="session")
def postgres_image(session_guest: Guest) -> str:
    return testbed.ensure_image(session_guest, "postgres")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the guest journal of the units the test touched (or the tail of
    the whole journal), since the cause of an e2e failure is usually only in there."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        funcargs = getattr(item, "funcargs", {})
        guest = funcargs.get("guest") or funcargs.get("session_guest")
        if isinstance(guest, Guest) and guest.alive():
            units = sorted(guest.units_of_interest)
            try:
                journal = guest.journal(*units, lines=150)
            except Exception as exc:  # the report must not hide the test's own failure
                journal = f"(could not read the journal: {exc})"
            report.sections.append((f"guest journal {' '.join(units) or '(all)'}", journal))
    return report
