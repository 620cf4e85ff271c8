"""`make demo` / `make demo-down`: the agent running for real on a machine without systemd.

    python -m tests.e2e.demo up     # build what is missing, boot, install, start, show status
    python -m tests.e2e.demo down   # stop the guest, verify nothing is left behind

`up` boots the persistent testbed guest (Debian 13, systemd 257, Podman 5.4), builds this
checkout's deb and installs it (`apt-get install ./aistack_*.deb`, as users do), starts
Podman's API socket and the agent, waits for READY, runs `aistack up`, and prints `aistack
status` (the table) run inside the guest right after it, plus how to enter the guest. It is
idempotent: run it again to reinstall and restart.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.e2e import testbed

UNIT = "aistack-agent.service"
# The stack with the testbed's stand-ins: no registry is reachable from here.
DEMO_CONFIG = """stack:
  gpu: none
  ollama: {{image: "{ollama}"}}
  open_webui: {{image: "{open-webui}"}}
  litellm: {{image: "{litellm}"}}
  postgres: {{image: "{postgres}"}}
"""


@contextmanager
def step(what: str) -> Iterator[None]:
    """One progress line per long step, with how long it took."""
    print(f"==> {what} ...", flush=True)
    started = time.monotonic()
    yield
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)


def up() -> int:
    cache = testbed.cache_dir()
    with step(f"testbed: rootfs and images (cache {cache}; first run builds, ~2-3 min)"):
        guest = testbed.up(cache)
    with step("building this checkout's deb and installing it in the guest (apt-get)"):
        testbed.install_agent_from_deb(guest, testbed.build_deb())
    with step("starting podman.socket and aistack-agent (Type=notify: waits for READY)"):
        guest.run(["systemctl", "enable", "--now", "podman.socket"], timeout=60)
        guest.run(["systemctl", "enable", UNIT], timeout=60)
        guest.run(["systemctl", "restart", UNIT], timeout=120)
    with step("aistack up: the stack (testbed stand-in images) started in order, healthy"):
        images = {name: testbed.IMAGE_TAGS[name] for name in testbed.IMAGE_TAGS}
        guest.write_file("/etc/aistack/agent.yaml", DEMO_CONFIG.format(**images))
        up = guest.run(["aistack", "up"], check=False, timeout=900)
        print(up.stdout.rstrip())
        if up.returncode:
            print(up.stderr, file=sys.stderr)
            return 1
    props = guest.unit_properties(UNIT, "ActiveState", "SubState", "StatusText")
    if props["ActiveState"] != "active":
        print(guest.journal(UNIT, lines=60), file=sys.stderr)
        print(f"aistack-agent did not start: {props}", file=sys.stderr)
        return 1
    print(f"\naistack-agent: {props['ActiveState']} ({props['SubState']}): {props['StatusText']}")
    # What `aistack up` left, as the agent saw it before answering (no wait for a poll):
    # the table a person reads; `curl -s localhost:9200/status` gives the same as JSON.
    print("\n$ aistack status   # inside the guest, right after aistack up")
    status = guest.run(["aistack", "status"], check=False, timeout=30)
    print(status.stdout.rstrip() or status.stderr.rstrip())
    enter = shlex.join([*guest.nsenter_argv(), *testbed.SHELL_ARGV])
    print(
        "\nEnter the guest:   " + enter,
        "\nInside it try:     aistack status; aistack logs ollama; systemctl status ollama; "
        "aistack restart litellm",
        "\nStop the demo:     make demo-down",
        sep="",
    )
    return 0


def down() -> int:
    guest = testbed.up_guest(testbed.cache_dir())
    if guest is None:
        print("no demo guest is up")
        return 0
    with step("stopping the demo guest"):
        report = guest.teardown(check=False)
    print(f"guest {guest.name} down; nothing left behind: {report.clean} {report}")
    return 0 if report.clean else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
