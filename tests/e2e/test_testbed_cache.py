"""The harness's own cache rules: a half-built or stale rootfs is never used, a corrupt
image tarball is rebuilt, and the mirror comes from the host's apt configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e


def test_rootfs_without_marker_stale_or_incomplete_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "rootfs/usr/bin").mkdir(parents=True)  # a half-built tree, no marker yet
    assert testbed.rootfs_problem(tmp_path) == "no completion marker"
    marker = tmp_path / "rootfs.done"
    marker.write_text('{"hash": ')  # torn write
    assert testbed.rootfs_problem(tmp_path) == "no completion marker"
    marker.write_text(json.dumps({"hash": "0" * 16}))
    assert testbed.rootfs_problem(tmp_path) == "recipe changed"
    marker.write_text(json.dumps({"hash": testbed.rootfs_recipe_hash()}))
    assert str(testbed.rootfs_problem(tmp_path)).startswith("missing")
    for key in testbed.ROOTFS_KEY_FILES:
        (tmp_path / "rootfs" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "rootfs" / key).touch()
    assert testbed.rootfs_problem(tmp_path) is None
    (tmp_path / "rootfs/usr/bin/podman").unlink()
    assert testbed.rootfs_problem(tmp_path) == "missing ['usr/bin/podman']"


def test_session_rootfs_is_the_current_recipe(session_guest: Guest) -> None:
    assert testbed.rootfs_problem(session_guest.cache) is None


def test_corrupt_image_tarball_is_rebuilt(guest: Guest, standin_images: dict[str, str]) -> None:
    name = "litellm"
    cached = guest.cache / "images" / f"{name}-{testbed.image_recipe_hash(name)}.tar"
    assert cached.is_file()
    tmp = cached.with_name(cached.name + ".corrupt")
    tmp.write_bytes(b"not a tar archive\n")
    tmp.replace(cached)
    guest.podman("rmi", "-f", standin_images[name])

    assert testbed.ensure_image(guest, name) == standin_images[name]

    assert cached.stat().st_size > 1_000_000
    label = guest.podman("image", "inspect", "--format", "{{.Labels}}", standin_images[name])
    assert testbed.image_recipe_hash(name) in label


def test_mirror_comes_from_host_apt_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISTACK_TESTBED_MIRROR", "http://mirror.invalid/debian")
    assert testbed.host_mirror() == "http://mirror.invalid/debian"
    monkeypatch.delenv("AISTACK_TESTBED_MIRROR")
    mirror = testbed.host_mirror()
    apt = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").iterdir()]
    assert any(mirror in p.read_text() for p in apt if p.is_file())
