"""Compose value syntaxes and merge rules, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from agent.compose.merge import merge, strip_tags
from agent.compose.values import (
    command_words,
    go_duration,
    parse_bytes,
    parse_duration,
    parse_port,
    parse_volume,
    podman_size,
    qualify_image,
)
from agent.compose.yamlload import Tagged, load_text


@pytest.mark.parametrize(
    ("ref", "qualified"),
    [
        ("postgres:16", "docker.io/library/postgres:16"),
        ("nginx", "docker.io/library/nginx"),
        ("ollama/ollama:latest", "docker.io/ollama/ollama:latest"),
        ("docker.io/redis", "docker.io/library/redis"),
        ("index.docker.io/library/redis:7", "docker.io/library/redis:7"),
        ("ghcr.io/open-webui/open-webui:main", "ghcr.io/open-webui/open-webui:main"),
        ("localhost/app", "localhost/app"),
        ("registry:5000/app", "registry:5000/app"),
        ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
    ],
)
def test_qualify_image(ref: str, qualified: str) -> None:
    assert qualify_image(ref) == qualified


@pytest.mark.parametrize(
    ("spec", "long"),
    [
        ("80", {"target": "80", "protocol": "tcp"}),
        (80, {"target": "80", "protocol": "tcp"}),
        ("8080:80", {"target": "80", "published": "8080", "protocol": "tcp"}),
        (
            "127.0.0.1:8080:80/udp",
            {"target": "80", "published": "8080", "host_ip": "127.0.0.1", "protocol": "udp"},
        ),
        ("127.0.0.1::80", {"target": "80", "host_ip": "127.0.0.1", "protocol": "tcp"}),
        (
            "[::1]:8080:80",
            {"target": "80", "published": "8080", "host_ip": "::1", "protocol": "tcp"},
        ),
        (
            "9000-9002:9000-9002",
            {"target": "9000-9002", "published": "9000-9002", "protocol": "tcp"},
        ),
    ],
)
def test_parse_port(spec: Any, long: dict[str, Any]) -> None:
    assert parse_port(spec) == long


@pytest.mark.parametrize("spec", ["80:http", "a:b:c:d/x", "[::1]80:80"])
def test_parse_port_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_port(spec)


def test_parse_volume() -> None:
    assert parse_volume("/data") == {"type": "volume", "target": "/data"}
    assert parse_volume("/data:ro") == {"type": "volume", "target": "/data", "read_only": True}
    assert parse_volume("vol:/data:nocopy") == {
        "type": "volume",
        "target": "/data",
        "source": "vol",
        "volume": {"nocopy": True},
    }
    assert parse_volume("./d:/data:ro,Z,rshared") == {
        "type": "bind",
        "target": "/data",
        "source": "./d",
        "read_only": True,
        "bind": {"create_host_path": True, "selinux": "Z", "propagation": "rshared"},
    }
    with pytest.raises(ValueError):
        parse_volume("a:b:c:d")


def test_durations_sizes_and_commands() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("500ms") == 0.5
    assert parse_duration(0) == 0
    assert go_duration(90) == "1m30s" and go_duration(0.5) == "500ms" and go_duration(3600) == "1h"
    for bad in ("10", 10, "1x", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_bytes("512m") == 512 * 2**20
    assert parse_bytes("1gb") == parse_bytes("1G") == 2**30
    assert parse_bytes(1024) == 1024
    assert podman_size(2**30) == "1g" and podman_size(1536) == "1536"
    assert command_words('sh -c "echo hi"') == ["sh", "-c", "echo hi"]
    assert command_words(["a", 1, True]) == ["a", "1", "true"]


def test_yaml_scalars_follow_compose_not_yaml_1_1() -> None:
    data = load_text("a: 22:22\nb: yes\nc: 0440\nd: on\ne: 1_000\nf: true\n", "f")
    assert data == {"a": "22:22", "b": "yes", "c": 288, "d": "on", "e": 1000, "f": True}


def test_yaml_anchors_are_copied_not_shared() -> None:
    data = load_text("x: &a {k: [1]}\ny: *a\n", "f")
    data["y"]["k"].append(2)
    assert data["x"] == {"k": [1]}


SVC = ("services", "web")


def test_merge_rules() -> None:
    base = {
        "image": "a",
        "command": ["x", "y"],
        "environment": {"A": "1", "B": "1"},
        "ports": [{"target": "80", "published": "8080", "protocol": "tcp"}],
        "volumes": [{"type": "bind", "source": "/a", "target": "/data"}],
        "dns": ["1.1.1.1"],
        "logging": {"driver": "json-file", "options": {"max-size": "1m"}},
        "x-meta": {"a": 1},
    }
    over = {
        "command": ["z"],
        "environment": {"B": "2"},
        "ports": [
            {"target": "80", "published": "8080", "protocol": "tcp"},
            {"target": "443", "published": "8443", "protocol": "tcp"},
        ],
        "volumes": [{"type": "bind", "source": "/b", "target": "/data"}],
        "dns": ["1.1.1.1", "9.9.9.9"],
        "logging": {"driver": "journald"},
        "x-meta": {"b": 2},
    }
    out = merge({"services": {"web": base}}, {"services": {"web": over}})["services"]["web"]
    assert out["command"] == ["z"]
    assert out["environment"] == {"A": "1", "B": "2"}
    assert [p["target"] for p in out["ports"]] == ["80", "443"]
    assert out["volumes"] == [{"type": "bind", "source": "/b", "target": "/data"}]
    assert out["dns"] == ["1.1.1.1", "9.9.9.9"]
    assert out["logging"] == {"driver": "journald"}
    assert out["x-meta"] == {"b": 2}


def test_reset_and_override_tags() -> None:
    base = {"services": {"web": {"ports": [{"target": "80"}], "environment": {"A": "1"}}}}
    over = {
        "services": {
            "web": {"ports": Tagged("reset", None), "environment": Tagged("override", {"B": "2"})}
        }
    }
    out = strip_tags(merge(base, over))
    assert out == {"services": {"web": {"environment": {"B": "2"}}}}
