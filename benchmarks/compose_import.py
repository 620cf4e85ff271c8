"""How long `aistack import-compose` takes on a large generated compose project.

Generates a 200-service project that uses the features a real one does (x- anchors with
merge keys, interpolation with defaults, an overlay file, extends, env files, ports,
bind and named volumes, several networks, healthchecks, depends_on chains with
conditions, GPU reservations, labels), then times the whole import (load, merge,
convert, render) over several runs and prints the median and the slowest. The target
is "well under a second"; the figure is printed, never asserted (timings depend on the
machine).

    .venv/bin/python benchmarks/compose_import.py [--services 200] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conditions import print_conditions

from agent.compose.cli import import_compose
from agent.quadlet import PodmanVersion

TARGET_S = 1.0


def generate(directory: Path, services: int) -> list[Path]:
    """Write compose.yaml + compose.override.yaml + env files for `services` services."""
    lines = [
        "x-defaults: &defaults",
        "  restart: unless-stopped",
        "  logging:",
        "    driver: journald",
        "  environment: &env",
        "    TZ: ${TZ:-UTC}",
        "    LOG_LEVEL: ${LOG_LEVEL:-info}",
        "services:",
        "  base:",
        "    image: ghcr.io/example/base:${TAG:-1}",
        "    labels: {tier: base}",
    ]
    for i in range(services - 1):
        name = f"svc{i:03d}"
        lines += [
            f"  {name}:",
            "    <<: *defaults",
            f"    image: ghcr.io/example/app{i % 17}:${{TAG:-1}}",
            "    environment:",
            "      <<: *env",
            f"      SERVICE_INDEX: '{i}'",
            f"      PEER_URL: http://svc{(i + 1) % (services - 1):03d}:8080",
            "    env_file: [common.env]",
            "    ports:",
            f"      - '127.0.0.1:{20000 + i}:8080'",
            "    volumes:",
            f"      - ./data/{name}:/data",
            f"      - cache{i % 10}:/cache",
            "    networks: [front, back]",
            "    labels:",
            f"      - com.example.service={name}",
            "      - com.example.rule=Host(`example.com`) && PathPrefix(`/x`)",
            "    healthcheck:",
            "      test: [CMD-SHELL, 'wget -q --spider http://localhost:8080/health || exit 1']",
            "      interval: 10s",
            "      retries: 3",
        ]
        if i % 5 == 0:
            lines += ["    extends: base"]
        if i % 20 == 0:
            lines += [
                "    deploy:",
                "      resources:",
                "        reservations:",
                "          devices: [{driver: nvidia, count: all, capabilities: [gpu]}]",
            ]
        if i > 0:
            condition = "service_healthy" if i % 3 == 0 else "service_started"
            lines += [
                "    depends_on:",
                f"      svc{i - 1:03d}:",
                f"        condition: {condition}",
            ]
    lines += ["networks:", "  front: {}", "  back:", "    internal: true", "volumes:"]
    lines += [f"  cache{n}: {{}}" for n in range(10)]
    (directory / "compose.yaml").write_text("\n".join(lines) + "\n")
    override = ["services:"]
    for i in range(0, services - 1, 4):
        override += [f"  svc{i:03d}:", "    environment:", "      OVERRIDDEN: 'yes'"]
    (directory / "compose.override.yaml").write_text("\n".join(override) + "\n")
    (directory / "common.env").write_text("API_KEY=abc123\nMODE=production\n")
    (directory / ".env").write_text("TAG=2.1.0\n")
    return [directory / "compose.yaml", directory / "compose.override.yaml"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print_conditions("start")
    with tempfile.TemporaryDirectory(prefix="compose-bench-") as tmp:
        files = generate(Path(tmp), args.services)
        times, units = [], 0
        for _ in range(args.runs):
            start = time.perf_counter()
            result = import_compose(files, environ={"HOME": tmp}, target=PodmanVersion(5, 0))
            rendered = [u.render() for u in result.units]
            times.append(time.perf_counter() - start)
            units = len(rendered)
    median = statistics.median(times)
    print(
        f"import-compose: {args.services} services -> {units} units, "
        f"median {median * 1000:.0f} ms, slowest {max(times) * 1000:.0f} ms over {args.runs} runs "
        f"(target < {TARGET_S:.0f} s; ratio {median / TARGET_S:.2f})"
    )
    print_conditions("end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
