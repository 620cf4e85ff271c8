"""`make gauntlet`: the fault gauntlet (tests/e2e/gauntlet.py) with 100 faults by default.

Every kind of fault once in a seeded order, then random draws from the catalogue; after
each, the stack must recover within its bound, /status must agree with systemd and
Podman, and there must be no restart storm; at the end every backup verifies and no
secret is in any log. Prints the figures and the machine's conditions. Exits 1 when a
check failed (that is the finding), 2 when it could not run.

    sudo .venv/bin/python benchmarks/gauntlet.py [--faults 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conditions import print_conditions  # noqa: E402

from tests.e2e import gauntlet, testbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--budget",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop drawing faults after this long (0: no limit); CI passes what is left "
        "of its 45 minutes",
    )
    args = parser.parse_args()
    print_conditions("start")
    faults = gauntlet.plan(args.faults, args.seed)
    print(f"fault gauntlet: {len(faults)} faults, seed {args.seed}, "
          f"catalogue of {len(gauntlet.CATALOGUE)}", flush=True)  # fmt: skip
    guest = testbed.boot_guest()
    try:
        result = gauntlet.run(guest, testbed.build_deb(), faults, args.budget or None)
    except (testbed.TestbedError, AssertionError) as exc:
        print(f"gauntlet: could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        guest.run(["aistack", "down"], check=False, timeout=300)
        guest.teardown(check=False)
    print("\n".join(gauntlet.summary(result)))
    print_conditions("end")
    return 1 if gauntlet.failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
