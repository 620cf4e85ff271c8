"""End-to-end testbed: a Debian 13 guest running real systemd and Podman under systemd-nspawn.

Why this shape (see tests/e2e/README.md): the agent drives systemd, quadlet and Podman, so
its end-to-end tests need all three for real. The host here has no systemd as PID 1 and no
container registry, so the harness

* builds (once, cached) a Debian 13 rootfs with debootstrap from the host's own mirror,
* boots a throw-away copy of it with systemd-nspawn and enters it with nsenter,
* builds small stand-in images and a real PostgreSQL 17 image locally (``podman import``),
  caches them as tarballs and loads them into each fresh guest,
* tears the guest down and proves nothing of it is left on the host.

Only the standard library is used: the harness runs from the project's venv on the host.

CLI: ``python -m tests.e2e.testbed build|up|down|shell|status``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import inspect
import io
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("aistack.testbed")

HERE = Path(__file__).resolve().parent
IMAGES_DIR = HERE / "images"
REPO_ROOT = HERE.parent.parent
SUITE = "trixie"
DEFAULT_CACHE = "/var/cache/aistack-testbed"
UP_NAME = "aistack-testbed"

# Files whose absence means a rootfs is not usable, whatever its marker says.
ROOTFS_KEY_FILES = (
    "usr/lib/systemd/systemd",
    "usr/bin/podman",
    "usr/bin/busybox",
    "usr/bin/python3",
    "usr/bin/pg_dump",
    "usr/lib/systemd/system-generators/podman-system-generator",
    "etc/containers/containers.conf.d/aistack-testbed.conf",
)
CONTAINERS_CONF_GUEST = "/etc/containers/containers.conf.d/aistack-testbed.conf"
QUADLET_DIR = "/etc/containers/systemd"

# The flags verified in shared/reference/testbed-facts.md; each one is needed there.
NSPAWN_FLAGS = (
    "-b",
    "--register=no",
    "--keep-unit",
    "--console=passive",
    "--private-network",
    "--capability=all",
    "--system-call-filter=@keyring bpf",
)

# A clean environment for commands in the guest: the host's would leak into it.
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "PODMAN_IGNORE_CGROUPSV1_WARNING": "1",
}

IMAGE_LABEL = "io.aistack.test.recipe"
IMAGE_TAGS = {
    "ollama": "localhost/aistack-test/ollama:1",
    "open-webui": "localhost/aistack-test/open-webui:1",
    "litellm": "localhost/aistack-test/litellm:1",
    "postgres": "localhost/aistack-test/postgres:17",
    # an older major, for `aistack migrate --pg-upgrade` (tests/e2e/test_migrate.py)
    "postgres-15": "localhost/aistack-test/postgres:15",
    "open-webui-real": "localhost/aistack-test/open-webui-real:1",
    "litellm-real": "localhost/aistack-test/litellm-real:1",
}
STANDIN_NAMES = ("ollama", "open-webui", "litellm")
# The real PostgreSQL images: Debian suite and the major its packages give.
POSTGRES_BUILDS = {"postgres": ("trixie", 17), "postgres-15": ("bookworm", 15)}

NS_GET_PARENT = 0xB702  # ioctl: the parent of a PID namespace (linux/nsfs.h)


class TestbedError(RuntimeError):
    """The testbed could not be built, booted or torn down cleanly."""


class GuestCommandError(TestbedError):
    """A command in the guest exited non-zero; carries its output for the failure report."""

    def __init__(self, cmd: Sequence[str], result: subprocess.CompletedProcess[Any]) -> None:
        self.result = result
        out = _as_text(result.stdout)[-4000:]
        err = _as_text(result.stderr)[-4000:]
        super().__init__(
            f"guest command failed (rc={result.returncode}): {shlex.join(cmd)}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )


def _as_text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# --------------------------------------------------------------------------- host helpers


def cache_dir() -> Path:
    """The cache root; rootfs, image tarballs and guest copies live here (one filesystem,
    so renames into place are atomic and image tarballs can be hard-linked into guests)."""
    path = Path(os.environ.get("AISTACK_TESTBED_CACHE", DEFAULT_CACHE))
    for sub in ("", "images", "guests", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def _sh(
    cmd: Sequence[str | Path],
    *,
    timeout: float,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    log_to: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a host command, failing loudly; long build output goes to a log file."""
    argv = [str(c) for c in cmd]
    log.debug("host: %s", shlex.join(argv))
    if log_to is None:
        res = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env)
    else:
        with log_to.open("ab") as out:
            out.write(f"\n$ {shlex.join(argv)}\n".encode())
            out.flush()
            res = subprocess.run(
                argv, input=input, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env
            )
    if res.returncode != 0:
        tail = _tail(log_to, 40) if log_to else _as_text(res.stdout) + _as_text(res.stderr)
        raise TestbedError(f"host command failed (rc={res.returncode}): {shlex.join(argv)}\n{tail}")
    return res


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _locked(path: Path, shared: bool = False) -> Iterator[None]:
    """Serialise builds between concurrent sessions that share one cache; readers (a guest
    copying the rootfs) share the lock, so a rebuild never swaps the tree under them."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: str) -> None:
    """Write then rename, so a reader sees the old file or the whole new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in the host's mount namespace."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """Delete a build or guest tree, refusing to follow into anything still mounted."""
    if not path.exists() and not path.is_symlink():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    if _mounts_under(path):
        raise TestbedError(f"still mounted under {path}: {_mounts_under(path)}")
    _sh(["rm", "-rf", "--one-file-system", "--", path], timeout=600)


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key] = value.strip().strip('"')
    return out


_DEBIAN_SUITES = {
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "sid",
    "bookworm",
    "trixie",
    "forky",
}


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields:
            yield fields


def host_mirror() -> str:
    """The Debian mirror the host itself uses, read from its apt configuration at run time.

    Why: the project must not name a registry host in its files, and the host's mirror is
    by definition one that is reachable. AISTACK_TESTBED_MIRROR overrides it.
    """
    if override := os.environ.get("AISTACK_TESTBED_MIRROR"):
        return override
    codename = _os_release().get("VERSION_CODENAME", "")
    candidates: list[tuple[str, list[str]]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for st in _deb822_stanzas(path.read_text()):
                if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", ""):
                    continue
                suites = st.get("suites", "").split()
                candidates += [(uri, suites) for uri in st.get("uris", "").split()]
    sources_list = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in sources_list:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] != ["deb"]:
                    continue
                words = [w for w in words[1:] if not w.startswith("[") and not w.endswith("]")]
                if len(words) >= 2:
                    candidates.append((words[0], [words[1]]))
    for uri, suites in candidates:
        if codename and codename in suites:
            return uri
    for uri, suites in candidates:
        if "security" not in uri and any(s in _DEBIAN_SUITES for s in suites):
            return uri
    raise TestbedError(
        "no Debian mirror found in /etc/apt/sources.list{,.d}; set AISTACK_TESTBED_MIRROR"
    )


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int, starttime: int | None = None) -> bool:
    """True if pid runs and (given starttime) is still the same process, not a reused pid."""
    if pid <= 0:
        return False  # waitpid(0) would reap any of our children
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[2] == starttime


def _pidns_chain(pid: int) -> list[int]:
    """Inodes of the PID namespace of pid and of all its ancestors visible from here."""
    chain: list[int] = []
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    try:
        while True:
            chain.append(os.fstat(fd).st_ino)
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:
                return chain
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _host_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


# --------------------------------------------------------------------------- recipes


def _hash_files(h: Any, *roots: Path) -> None:
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            h.update(str(path.relative_to(IMAGES_DIR)).encode() + b"\0" + path.read_bytes())


# This file's text as imported. inspect.getsource() reads the file again, with the line
# numbers of the code that was imported: an edit made while a build runs would give that
# build a hash of the wrong lines, and a needless rebuild next time.
_SOURCE_LINES = Path(__file__).read_text().splitlines(keepends=True)


def _hash_code(h: Any, *objs: Any) -> None:
    """Hash the source of the build functions, so a change to how we build rebuilds."""
    for obj in objs:
        if inspect.isclass(obj):
            pattern = re.compile(rf"class {obj.__name__}\b")
            start = next(i for i, line in enumerate(_SOURCE_LINES) if pattern.match(line))
            while start > 0 and _SOURCE_LINES[start - 1].startswith("@"):
                start -= 1
        else:
            start = obj.__code__.co_firstlineno - 1
        h.update("".join(inspect.getblock(_SOURCE_LINES[start:])).encode())


def _read_packages() -> tuple[list[str], list[str]]:
    base: list[str] = []
    extra: list[str] = []
    for line in (IMAGES_DIR / "rootfs" / "packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        stage, _, names = line.partition(":")
        {"base": base, "extra": extra}[stage.strip()].extend(names.split())
    return base, extra


def rootfs_recipe_hash() -> str:
    h = hashlib.sha256(SUITE.encode())
    _hash_files(h, IMAGES_DIR / "rootfs")
    _hash_code(h, _build_rootfs_into, _read_packages)
    return h.hexdigest()[:16]


def image_recipe_hash(name: str) -> str:
    """Recipe hash of one image: its files, its build code and (stand-ins) the busybox it
    copies from the rootfs."""
    h = hashlib.sha256(f"{name}\0{IMAGE_TAGS[name]}\0{SUITE}".encode())
    if name in POSTGRES_BUILDS:
        h.update(repr(POSTGRES_BUILDS[name]).encode())
        _hash_files(h, IMAGES_DIR / "postgres")
        _hash_code(h, _build_postgres)
    elif name in REAL_IMAGES:
        _hash_files(h, IMAGES_DIR / "real" / name)
        _hash_code(h, _build_real, _real_tree, RealImage)
        h.update(repr(REAL_IMAGES[name]).encode())
    else:
        _hash_files(h, IMAGES_DIR / "standin" / "common", IMAGES_DIR / "standin" / name)
        _hash_code(h, _build_standin, StandIn)
        h.update(STANDINS[name].__repr__().encode() + rootfs_recipe_hash().encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- rootfs


def rootfs_problem(cache: Path) -> str | None:
    """Why the cached rootfs cannot be used, or None if it is good."""
    rootfs, marker = cache / "rootfs", cache / "rootfs.done"
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "no completion marker"
    if meta.get("hash") != rootfs_recipe_hash():
        return "recipe changed"
    missing = [f for f in ROOTFS_KEY_FILES if not (rootfs / f).exists()]
    return f"missing {missing}" if missing else None


def ensure_rootfs(cache: Path | None = None) -> Path:
    """Return the cached rootfs, (re)building it when it is missing, stale or broken.

    The tree is built in a temp dir, renamed into place, and only then is the marker
    written (atomically): a crash at any point leaves no marker, so the next run rebuilds.
    """
    cache = cache or cache_dir()
    rootfs, marker = cache / "rootfs", cache / "rootfs.done"
    with _locked(cache / ".build.lock"):
        problem = rootfs_problem(cache)
        if problem is None:
            return rootfs
        log.info("building the guest rootfs (%s); this takes a few minutes", problem)
        started = time.monotonic()
        marker.unlink(missing_ok=True)
        for stale in cache.glob("rootfs.tmp-*"):
            _remove_tree(stale)
        tmp = Path(tempfile.mkdtemp(prefix="rootfs.tmp-", dir=cache))
        try:
            _build_rootfs_into(tmp, host_mirror(), cache / "build.log")
            missing = [f for f in ROOTFS_KEY_FILES if not (tmp / f).exists()]
            if missing:
                raise TestbedError(f"rootfs build produced no {missing}; see {cache}/build.log")
            _remove_tree(rootfs)
            os.rename(tmp, rootfs)
        except BaseException:
            _remove_tree(tmp)
            raise
        _write_atomic(marker, json.dumps({"hash": rootfs_recipe_hash(), "built": time.time()}))
        log.info("rootfs built in %.0f s", time.monotonic() - started)
    return rootfs


def _build_rootfs_into(root: Path, mirror: str, build_log: Path) -> None:
    """debootstrap + apt-get in a private mount namespace: whatever they mount (proc, sys)
    vanishes with the namespace, even if the build is killed half-way."""
    base, extra = _read_packages()
    root.chmod(0o755)
    _sh(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(base)}",
            SUITE,
            root,
            mirror,
        ],
        timeout=1800,
        log_to=build_log,
    )
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": GUEST_ENV["PATH"], "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    script = (
        f"mount -t proc proc {shlex.quote(str(root))}/proc && "
        f"chroot {shlex.quote(str(root))} sh -ec 'apt-get update -q && "
        f"apt-get install -y -q --no-install-recommends {' '.join(extra)} && apt-get clean'"
    )
    _sh(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        timeout=1800,
        env=env,
        log_to=build_log,
    )
    policy.unlink()
    resolv.write_text("")
    (root / "etc/hostname").write_text("aistack-testbed\n")  # not the host's name
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    conf = root / CONTAINERS_CONF_GUEST.lstrip("/")
    conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IMAGES_DIR / "rootfs" / "aistack-testbed.conf", conf)
    # Containers only ever come from local images here: never try to pull.
    (root / "etc/containers/registries.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/containers/registries.conf.d/aistack-testbed.conf").write_text(
        'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
    )


# --------------------------------------------------------------------------- guest


@dataclasses.dataclass
class TeardownReport:
    """What of a guest was still on the host after teardown; all empty means clean."""

    processes: list[str]
    mounts: list[str]
    links: list[str]
    root_left: bool
    escalated: bool

    @property
    def clean(self) -> bool:
        return not (self.processes or self.mounts or self.links or self.root_left)


@dataclasses.dataclass
class Guest:
    """A booted guest: real systemd 257 + Podman in a private copy of the cached rootfs."""

    name: str
    root: Path
    nspawn_pid: int
    nspawn_start: int
    pid: int  # the guest's systemd (PID 1 inside), as a host pid
    pidns: int  # inode of the guest's PID namespace
    host_links: list[str]
    cache: Path
    persistent: bool = False  # an `up` guest: meant to outlive the process that booted it
    units_of_interest: set[str] = dataclasses.field(default_factory=set)
    _nsenter: str = dataclasses.field(default_factory=lambda: shutil.which("nsenter") or "nsenter")

    # ---- state file, so `down`/stale cleanup can find a guest this process did not boot

    @property
    def state_path(self) -> Path:
        return self.cache / "guests" / f"{self.name}.json"

    def save_state(self) -> None:
        data = dataclasses.asdict(self)
        data.update(root=str(self.root), cache=str(self.cache), owner=os.getpid())
        for key in ("units_of_interest", "_nsenter"):
            data.pop(key)
        _write_atomic(self.state_path, json.dumps(data, indent=1))

    @classmethod
    def from_state(cls, path: Path) -> Guest:
        data = json.loads(path.read_text())
        data.pop("owner", None)
        data["root"], data["cache"] = Path(data["root"]), Path(data["cache"])
        return cls(**data)

    # ---- commands

    def nsenter_argv(self) -> list[str]:
        return [self._nsenter, "-t", str(self.pid), "-a"]

    def alive(self) -> bool:
        return _alive(self.nspawn_pid, self.nspawn_start) and _alive(self.pid)

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 120,
        binary: bool = False,
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command in the guest via nsenter (not under the guest's systemd: no
        seccomp filter, host cgroup). A string is run with sh -c."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if isinstance(input, str):
            input = input.encode()
        log.debug("guest: %s", shlex.join(argv))
        res: subprocess.CompletedProcess[Any] = subprocess.run(
            self.nsenter_argv() + argv,
            input=input,
            capture_output=True,
            timeout=timeout,
            env=GUEST_ENV,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if not binary:
            res.stdout, res.stderr = _as_text(res.stdout), _as_text(res.stderr)
        if check and res.returncode != 0:
            raise GuestCommandError(argv, res)
        return res

    def run_unit(
        self,
        cmd: Sequence[str] | str,
        *,
        properties: Sequence[str] = (),
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command as a transient service of the guest's systemd, so it gets what real
        services get (the nspawn seccomp filter, cgroup, environment); waits and pipes I/O."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        props = [a for p in properties for a in ("-p", p)]
        return self.run(
            ["systemd-run", "--wait", "--pipe", "--quiet", "--collect", *props, "--", *argv],
            input=input,
            check=check,
            timeout=timeout,
        )

    def write_file(self, guest_path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Write a file in the guest atomically (temp + rename), creating parent dirs."""
        script = (
            'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tbtmp" && chmod "$2" "$1.tbtmp" '
            '&& mv -f -- "$1.tbtmp" "$1"'
        )
        self.run(["sh", "-c", script, "sh", guest_path, f"{mode:o}"], input=data)

    def read_file(self, guest_path: str) -> bytes:
        out: bytes = self.run(["cat", "--", guest_path], binary=True).stdout
        return out

    def copy_in(self, host_path: Path | str, guest_path: str) -> None:
        """Copy a host file or directory tree (without __pycache__) into the guest."""
        src = Path(host_path)
        if src.is_file():
            self.write_file(guest_path, src.read_bytes(), src.stat().st_mode & 0o7777)
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(src, arcname=".", filter=_no_pycache)
        self.run(
            ["sh", "-c", 'mkdir -p -- "$1" && tar -x -C "$1" -f -', "sh", guest_path],
            input=buf.getvalue(),
        )

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        out: str = self.run(["podman", *args], check=check, timeout=timeout).stdout
        return out

    # ---- systemd and quadlet

    def write_quadlet(self, filename: str, text: str) -> str | None:
        """Write a quadlet file; returns the service it generates (after daemon_reload)."""
        self.write_file(f"{QUADLET_DIR}/{filename}", text)
        unit = _quadlet_service(filename)
        if unit:
            self.units_of_interest.add(unit)
        return unit

    def daemon_reload(self) -> None:
        self.run(["systemctl", "daemon-reload"])

    def start(self, *units: str, check: bool = True, timeout: float = 120) -> int:
        """systemctl start: waits for the start job (for Notify=healthy, until healthy)."""
        self.units_of_interest.update(units)
        rc: int = self.run(["systemctl", "start", *units], check=check, timeout=timeout).returncode
        return rc

    def unit_properties(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"-p{p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_unit(self, unit: str, state: str = "active", timeout: float = 60) -> dict[str, str]:
        """Poll until the unit's ActiveState is state; on timeout fail with its journal."""
        self.units_of_interest.add(unit)
        deadline = time.monotonic() + timeout
        props: dict[str, str] = {}
        while time.monotonic() < deadline:
            props = self.unit_properties(unit, "ActiveState", "SubState", "Result", "NRestarts")
            if props.get("ActiveState") == state:
                return props
            time.sleep(0.5)
        raise TimeoutError(
            f"{unit} not {state} after {timeout:.0f} s: {props}\n{self.journal(unit, lines=60)}"
        )

    def wait_for(self, what: str, probe: Any, timeout: float = 60, interval: float = 0.5) -> Any:
        """Poll probe() until it returns something truthy; why: services come up async."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def journal(self, *units: str, lines: int = 200) -> str:
        argv = ["journalctl", "--no-pager", "-o", "short-precise", "-n", str(lines)]
        argv += [a for u in units for a in ("-u", u)]
        res = self.run(argv, check=False, timeout=30)
        return str(res.stdout) + str(res.stderr)

    def http(
        self,
        method: str,
        url: str,
        body: str | None = None,
        timeout: float = 10,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """One HTTP request from inside the guest (python3 urllib), as (status, body)."""
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "m, u, b, t = sys.argv[1], sys.argv[2], sys.stdin.read(), float(sys.argv[3])\n"
            "r = urllib.request.Request(u, data=b.encode() if b else None, method=m,\n"
            "                           headers=json.loads(sys.argv[4]))\n"
            "try:\n"
            "    with urllib.request.urlopen(r, timeout=t) as f: s, d = f.status, f.read()\n"
            "except urllib.error.HTTPError as e: s, d = e.code, e.read()\n"
            "print(s); sys.stdout.write(d.decode())\n"
        )
        res = self.run(
            ["python3", "-c", script, method, url, str(timeout), json.dumps(dict(headers or {}))],
            input=body or "",
            timeout=timeout + 10,
        )
        status, _, text = str(res.stdout).partition("\n")
        return int(status), text

    # ---- test hygiene

    def reset(self) -> None:
        """Undo what a test left: quadlet units and files, containers, networks, volumes."""
        qdir = QUADLET_DIR
        files = self.run(["sh", "-c", f"ls {qdir} 2>/dev/null || true"]).stdout.split()
        units = [u for u in map(_quadlet_service, files) if u]
        if units:
            self.run(["systemctl", "stop", *units], check=False, timeout=120)
        self.run(["sh", "-c", f"rm -rf {qdir}/* /etc/systemd/system/e2e-*"])
        self.run(["systemctl", "daemon-reload"])
        self.run(["systemctl", "reset-failed"], check=False)
        self.run(["podman", "rm", "-a", "-f", "-t", "0"], check=False)
        self.run(["podman", "pod", "rm", "-a", "-f"], check=False)
        self.run(["podman", "volume", "prune", "-f"], check=False)
        self.run(["podman", "network", "prune", "-f"], check=False)
        self.units_of_interest.clear()

    # ---- teardown

    def guest_processes(self) -> list[int]:
        """Host pids of every process that belongs to this guest: in its PID namespace (or
        one nested in it, e.g. containers) or chrooted into its tree."""
        root = str(self.root)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if self.pidns in _pidns_chain(pid):
                    found.append(pid)
                    continue
                where = os.readlink(f"/proc/{pid}/root")
            except OSError:
                continue  # exited meanwhile
            if where == root or where.startswith(root + "/"):
                found.append(pid)
        return found

    def teardown(self, timeout: float = 90, check: bool = True) -> TeardownReport:
        """Power the guest off, escalate only after timeout, then prove nothing is left.

        Order matters (testbed-facts.md): a SIGKILL to nspawn first orphans the guest's
        systemd and containers, so we ask the guest to power off, then SIGTERM nspawn,
        and only then kill the guest's own PID 1 (which takes its whole namespace along).
        """
        escalated = False
        if _alive(self.nspawn_pid, self.nspawn_start):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=15)
            if not self._wait_nspawn_exit(timeout * 2 / 3):
                log.warning("%s: poweroff did not finish, sending SIGTERM to nspawn", self.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.nspawn_pid, signal.SIGTERM)
                if not self._wait_nspawn_exit(timeout / 3):
                    escalated = True
                    log.warning("%s: escalating: SIGKILL to the guest's PID 1", self.name)
                    with contextlib.suppress(ProcessLookupError):
                        if _alive(self.pid):
                            os.kill(self.pid, signal.SIGKILL)
                    if not self._wait_nspawn_exit(15):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(self.nspawn_pid, signal.SIGKILL)
                        self._wait_nspawn_exit(5)
        leftovers = self.guest_processes()
        if leftovers:
            escalated = True
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.guest_processes() and time.monotonic() < deadline:
                time.sleep(0.2)
        procs = [f"{p} {_cmdline(p)}" for p in self.guest_processes()]
        if _alive(self.nspawn_pid, self.nspawn_start):
            procs.append(f"{self.nspawn_pid} {_cmdline(self.nspawn_pid)}")
        mounts = _mounts_under(self.root)
        links = sorted(set(_host_links()) - set(self.host_links))
        if not procs and not mounts:
            _remove_tree(self.root)
            self.state_path.unlink(missing_ok=True)
            self.log_path.unlink(missing_ok=True)
        report = TeardownReport(procs, mounts, links, self.root.exists(), escalated)
        if check and not report.clean:
            raise TestbedError(f"guest {self.name} left things behind: {report}")
        return report

    @property
    def log_path(self) -> Path:
        return self.cache / "guests" / f"{self.name}.log"

    def _wait_nspawn_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(self.nspawn_pid, self.nspawn_start):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def _no_pycache(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name.split("/") or info.name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _quadlet_service(filename: str) -> str | None:
    """The service quadlet generates for a file (web.container -> web.service)."""
    stem, _, kind = filename.rpartition(".")
    if kind == "container":
        return f"{stem}.service"
    if kind in ("network", "volume", "pod", "image", "build", "kube"):
        return f"{stem}-{kind}.service" if kind != "kube" else f"{stem}.service"
    return None


def _find_guest_init(nspawn_pid: int, timeout: float = 30) -> int:
    """The guest's systemd: nspawn's child that is PID 1 in its own PID namespace and has
    exec'd systemd (before that, its mounts are not set up yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(nspawn_pid):
            break
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            st = _proc_stat(pid)
            if st is None or st[1] != nspawn_pid:
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            nspid = next(
                (ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), []
            )
            if nspid and nspid[-1] == "1" and comm == "systemd":
                return pid
        time.sleep(0.1)
    raise TestbedError(f"found no guest systemd under nspawn pid {nspawn_pid}")


def reap_stale_guests(cache: Path) -> None:
    """Tear down guests left by a killed session (their booting process is gone and they
    are not `up` guests) and the remains of crashed ones, so nothing piles up."""
    for state in (cache / "guests").glob("*.json"):
        try:
            data = json.loads(state.read_text())
            running = _alive(data["nspawn_pid"], data["nspawn_start"])
            if _alive(data["owner"]) or (running and data["persistent"]):
                continue
            log.warning("tearing down stale guest %s", data["name"])
            Guest.from_state(state).teardown(timeout=30, check=False)
        except (OSError, ValueError, KeyError, TypeError, TestbedError) as exc:
            log.warning("could not clean up %s: %s", state, exc)


def boot_guest(
    name: str | None = None,
    cache: Path | None = None,
    timeout: float = 120,
    persistent: bool = False,
) -> Guest:
    """Copy the cached rootfs and boot it; returns once the guest's systemd says the system
    is running (or degraded: systemd-modules-load always fails in a container)."""
    cache = cache or cache_dir()
    reap_stale_guests(cache)
    name = name or f"aistack-e2e-{secrets.token_hex(3)}"
    root = cache / "guests" / name
    if root.exists():
        raise TestbedError(f"guest dir {root} exists; is a guest named {name} still up?")
    started = time.monotonic()
    # Saved before anything exists, so a session killed at any point leaves a state file
    # that the next session's reap_stale_guests() follows to clean up.
    guest = Guest(name, root, 0, 0, 0, 0, _host_links(), cache, persistent)
    guest.save_state()
    try:
        while not root.exists():
            rootfs = ensure_rootfs(cache)
            with _locked(cache / ".build.lock", shared=True):
                if rootfs_problem(cache) is None:  # not rebuilt meanwhile by another session
                    # A plain copy (reflink where the filesystem can): the cache stays pristine.
                    _sh(["cp", "-a", "--reflink=auto", rootfs, root], timeout=600)
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with guest.log_path.open("wb") as out:
            proc = subprocess.Popen(
                ["systemd-nspawn", "-D", str(root), *NSPAWN_FLAGS],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        st = _proc_stat(proc.pid)
        guest.nspawn_pid, guest.nspawn_start = proc.pid, st[2] if st else 0
        guest.save_state()
        guest.pid = _find_guest_init(proc.pid)
        guest.pidns = os.stat(f"/proc/{guest.pid}/ns/pid").st_ino
        guest.save_state()
        _wait_running(guest, guest.log_path, timeout)
    except BaseException:
        guest.teardown(timeout=30, check=False)
        raise
    log.info("guest %s up in %.1f s", name, time.monotonic() - started)
    return guest


def _wait_running(guest: Guest, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        if not guest.alive():
            raise TestbedError(f"nspawn exited while booting:\n{_tail(log_path, 40)}")
        res = guest.run(["systemctl", "is-system-running"], check=False, timeout=15)
        state = str(res.stdout).strip()
        if state in ("running", "degraded"):
            return
        if state in ("maintenance", "stopping"):
            break
        time.sleep(0.5)
    raise TestbedError(f"guest did not boot (state {state!r}):\n{_tail(log_path, 40)}")


# --------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class StandIn:
    """How a stand-in image starts, mirroring the real image's ENTRYPOINT/CMD/port."""

    port: int
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


STANDINS = {
    "ollama": StandIn(11434, ("/bin/ollama",), ("serve",), ("OLLAMA_HOST=0.0.0.0:11434",)),
    "open-webui": StandIn(8080, ("/usr/local/bin/standin",)),
    "litellm": StandIn(4000, ("/usr/local/bin/standin",)),
}


def ensure_image(guest: Guest, name: str) -> str:
    """Make image name present in the guest: load the cached tarball, or build and cache it
    when its recipe changed. Returns the image reference."""
    tag, want = IMAGE_TAGS[name], image_recipe_hash(name)
    if _recipe_in_guest(guest, tag) == want:
        return tag
    cached = guest.cache / "images" / f"{name}-{want}.tar"
    # One lock per image: two sessions (the real-software lane runs beside the rest of
    # the suite) build different images at once, and wait for each other's same one.
    with _locked(guest.cache / f".image-{name}.lock"):
        for leftover in (guest.cache / "tmp").glob(f"{name}-build-*"):  # a killed build's
            _remove_tree(leftover)
        if cached.exists() and _load_image(guest, cached, tag, want):
            return tag
        log.info("building image %s (recipe %s)", tag, want)
        started = time.monotonic()
        if name in POSTGRES_BUILDS:
            _build_postgres(guest, tag, want, *POSTGRES_BUILDS[name])
        elif name in REAL_IMAGES:
            _build_real(guest, name, tag, want, cached)
        else:
            _build_standin(guest, name, tag, want)
        if name not in REAL_IMAGES:  # those cache the tarball they were imported from
            _save_image(guest, tag, cached)
        for old in (guest.cache / "images").glob(f"{name}-*.tar"):
            # open-webui-*.tar also matches open-webui-real-*.tar: only this image's own
            if old != cached and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}\.tar", old.name):
                old.unlink()
        log.info("image %s built in %.0f s", tag, time.monotonic() - started)
    return tag


def _recipe_in_guest(guest: Guest, tag: str) -> str | None:
    """The recipe hash label of the image tag in the guest, None if it has no such image."""
    fmt = '{{index .Labels "' + IMAGE_LABEL + '"}}'
    res = guest.run(["podman", "image", "inspect", "--format", fmt, tag], check=False)
    return str(res.stdout).strip() if res.returncode == 0 else None


def _guest_tmp(guest: Guest, name: str) -> tuple[Path, str]:
    """A file in the guest's /var/tmp seen from both sides (it is on the guest's root, not
    a tmpfs, so the host can reach it through the guest dir)."""
    return guest.root / "var/tmp" / name, f"/var/tmp/{name}"


def _load_image(guest: Guest, cached: Path, tag: str, want: str) -> bool:
    host, inside = _guest_tmp(guest, f"load-{cached.name}")
    try:
        try:
            os.link(cached, host)  # same filesystem: instant
        except OSError:
            shutil.copyfile(cached, host)
        real = REAL_IMAGES.get(_image_name(tag))
        if real is not None:  # a tree's tarball: imported again, with the same changes
            args = [a for c in real.changes(want) for a in ("--change", c)]
            cmd = ["podman", "import", "-q", *args, inside, tag]
        else:
            cmd = ["podman", "load", "-q", "-i", inside]
        res = guest.run(cmd, check=False, timeout=900)
    finally:
        host.unlink(missing_ok=True)
    if res.returncode == 0 and _recipe_in_guest(guest, tag) == want:
        return True
    log.warning("cached image %s is unusable, rebuilding: %s", cached, res.stderr)
    cached.unlink(missing_ok=True)
    return False


def _save_image(guest: Guest, tag: str, cached: Path) -> None:
    host, inside = _guest_tmp(guest, f"save-{cached.name}")
    host.unlink(missing_ok=True)
    guest.run(
        ["podman", "save", "-q", "--format", "docker-archive", "-o", inside, tag], timeout=600
    )
    tmp = cached.with_name(f".{cached.name}.tmp")
    shutil.move(host, tmp)
    os.replace(tmp, cached)


def _import(guest: Guest, tree: Path, tag: str, changes: Sequence[str]) -> None:
    """Pack a directory tree as the single layer of an image, with podman import in the
    guest (no registry, no Containerfile build needed)."""
    host, inside = _guest_tmp(guest, f"import-{secrets.token_hex(4)}.tar")
    try:
        _sh(["tar", "-C", tree, "--numeric-owner", "-cf", host, "."], timeout=600)
        args = [a for c in changes for a in ("--change", c)]
        guest.run(["podman", "import", "-q", *args, inside, tag], timeout=600)
    finally:
        host.unlink(missing_ok=True)


def _image_name(tag: str) -> str:
    return next(name for name, t in IMAGE_TAGS.items() if t == tag)


@dataclasses.dataclass(frozen=True)
class RealImage:
    """The real software from Debian + PyPI, shaped like its upstream image (entrypoint,
    port, data dir, what is installed: Open WebUI's has curl, LiteLLM's python3 and no
    curl). Pins: images/real/<name>/requirements.txt."""

    suite: str  # Debian suite of the base: Open WebUI needs Python < 3.13, so bookworm
    packages: tuple[str, ...]
    venv: str
    wheels: tuple[str, ...]  # local wheel files installed first (glob in PIP_FIND_LINKS)
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    port: int
    workdir: str
    volumes: tuple[str, ...] = ()

    def changes(self, recipe: str) -> list[str]:
        path = f"{self.venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return [
            f"ENTRYPOINT {json.dumps(list(self.entrypoint))}",
            f"CMD {json.dumps(list(self.cmd))}",
            f"ENV PATH={path}",
            "ENV LANG=C.UTF-8",
            *(f"ENV {e}" for e in self.env),
            f"EXPOSE {self.port}",
            f"WORKDIR {self.workdir}",
            *(f"VOLUME {v}" for v in self.volumes),
            f"LABEL {IMAGE_LABEL}={recipe}",
        ]


# No registry and no internet here beyond PyPI and Debian: each image is configured to
# start offline (the upstream images bake in what these variables turn off).
REAL_IMAGES = {
    "litellm-real": RealImage(
        suite="bookworm",
        packages=("python3", "python3-venv", "ca-certificates"),
        venv="/opt/litellm",
        wheels=(),
        entrypoint=("/opt/litellm/bin/litellm",),
        cmd=("--port", "4000"),
        # The model cost map is fetched from GitHub at start unless told to use its copy.
        env=("LITELLM_LOCAL_MODEL_COST_MAP=True",),
        port=4000,
        workdir="/app",
    ),
    "open-webui-real": RealImage(
        suite="bookworm",
        packages=("python3", "python3-venv", "ca-certificates", "curl"),
        venv="/opt/open-webui",
        # PyPI's plain torch is the multi-GB CUDA build; this machine keeps the CPU one.
        wheels=("torch-2.13.0+cpu-cp311-*.whl",),
        entrypoint=("/opt/open-webui/bin/open-webui", "serve"),
        cmd=("--host", "0.0.0.0", "--port", "8080"),
        # Offline: no Hugging Face downloads; embeddings through Ollama, not a local model.
        env=(
            "DATA_DIR=/app/backend/data",
            "OFFLINE_MODE=true",
            "HF_HUB_OFFLINE=1",
            "RAG_EMBEDDING_ENGINE=ollama",
            "ANONYMIZED_TELEMETRY=false",
            "SCARF_NO_ANALYTICS=true",
            "DO_NOT_TRACK=true",
        ),
        port=8080,
        workdir="/app/backend",
        volumes=("/app/backend/data",),
    ),
}


def _find_wheel(pattern: str) -> Path:
    dirs = [*os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]
    for d in dirs:
        found = sorted(Path(d).glob(pattern)) if Path(d).is_dir() else []
        if found:
            return found[-1]
    raise TestbedError(f"no wheel {pattern} in {dirs} (PIP_FIND_LINKS)")


def _real_tree(tree: Path, name: str, build_log: Path, pip_cache: Path) -> None:
    """debootstrap the base, then a venv with the pinned requirements, installed by pip
    inside a chroot (the host's CA bundle copied in: HTTPS goes through a proxy here), with
    a pip cache kept in the testbed cache across rebuilds."""
    spec = REAL_IMAGES[name]
    tree.chmod(0o755)
    _sh(["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
         f"--include={','.join(spec.packages)}", spec.suite, tree, host_mirror()],
        timeout=1800, log_to=build_log)  # fmt: skip
    work = tree / "tmp/aistack-build"
    (work / "wheels").mkdir(parents=True)
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", work / "ca.crt")
    shutil.copyfile(IMAGES_DIR / "real" / name / "requirements.txt", work / "requirements.txt")
    for pattern in spec.wheels:
        wheel = _find_wheel(pattern)
        shutil.copyfile(wheel, work / "wheels" / wheel.name)
    pip_cache.mkdir(parents=True, exist_ok=True)
    (tree / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
    venv = shlex.quote(spec.venv)
    install = (
        f"python3 -m venv {venv} && "
        f"if ls /tmp/aistack-build/wheels/*.whl >/dev/null 2>&1; then "
        f"{venv}/bin/pip install -q /tmp/aistack-build/wheels/*.whl; fi && "
        f"{venv}/bin/pip install -q -r /tmp/aistack-build/requirements.txt"
    )
    root = shlex.quote(str(tree))
    script = (
        f"mount --bind {shlex.quote(str(pip_cache))} {root}/root/.cache/pip && "
        f"mount -t proc proc {root}/proc && "
        f"chroot {root} env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "
        f"PIP_CERT=/tmp/aistack-build/ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "
        f"PIP_DEFAULT_TIMEOUT=180 sh -ec {shlex.quote(install)}"
    )
    _sh(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        timeout=2400, log_to=build_log)  # fmt: skip
    trim = ("tmp/aistack-build", "root/.cache", "usr/share/doc/*", "usr/share/man/*",
            "usr/share/locale/*", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*",
            "dev/*", "var/log/*.log")  # fmt: skip
    _sh(["sh", "-c", 'cd "$1" && shift && rm -rf -- $*', "sh", tree, *trim], timeout=300)
    for d in ("app/backend/data",) if name == "open-webui-real" else ("app",):
        (tree / d).mkdir(parents=True, exist_ok=True)


def _build_real(guest: Guest, name: str, tag: str, recipe: str, cached: Path) -> None:
    """Build the tree on the host, import it in the guest, and keep the tarball it was
    imported from as the cache (importing it again is what loading costs; no save)."""
    tree = Path(tempfile.mkdtemp(prefix=f"{name}-build-", dir=guest.cache / "tmp"))
    host, inside = _guest_tmp(guest, f"import-{name}.tar")
    try:
        _real_tree(tree, name, guest.cache / "build.log", guest.cache / "pip-cache")
        _sh(["tar", "-C", tree, "--numeric-owner", "-cf", host, "."], timeout=1200)
        args = [a for c in REAL_IMAGES[name].changes(recipe) for a in ("--change", c)]
        guest.run(["podman", "import", "-q", *args, inside, tag], timeout=900)
        tmp = cached.with_name(f".{cached.name}.tmp")
        shutil.move(host, tmp)
        os.replace(tmp, cached)
    finally:
        host.unlink(missing_ok=True)
        _remove_tree(tree)


def _build_standin(guest: Guest, name: str, tag: str, recipe: str) -> None:
    """A busybox-static tree plus the shared sh HTTP server (tcpsvd + handler) and the
    service's routes and CLI shims (see images/standin/)."""
    spec = STANDINS[name]
    src = IMAGES_DIR / "standin"
    with tempfile.TemporaryDirectory(prefix=f"{name}-build-", dir=guest.cache / "tmp") as tmp:
        tree = Path(tmp)
        for d in (
            "bin",
            "etc",
            "tmp",
            "run/fault",
            "root",
            "usr/local/bin",
            "usr/local/lib/standin",
            "var/lib/standin",
        ):
            (tree / d).mkdir(parents=True, exist_ok=True)
        (tree / "tmp").chmod(0o1777)
        busybox = tree / "bin/busybox"
        shutil.copy2(guest.root / "usr/bin/busybox", busybox)
        applets = _sh([busybox, "--list"], timeout=30).stdout.decode().split()
        for applet in applets:
            if not (tree / "bin" / applet).exists():
                (tree / "bin" / applet).symlink_to("busybox")
        (tree / "etc/passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        )
        (tree / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
        for layer in (src / "common", src / name):
            for f in sorted(p for p in layer.rglob("*") if p.is_file()):
                dest = tree / f.relative_to(layer)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)  # may be a busybox applet link
                shutil.copyfile(f, dest)
                dest.chmod(0o755 if f.stat().st_mode & 0o111 else 0o644)
        changes = [
            f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}",
            f"CMD {json.dumps(list(spec.cmd))}",
            "ENV PATH=/usr/local/bin:/bin",
            f"ENV STANDIN_SERVICE={name}",
            f"ENV STANDIN_PORT={spec.port}",
            *(f"ENV {e}" for e in spec.env),
            f"EXPOSE {spec.port}",
            f"LABEL {IMAGE_LABEL}={recipe}",
        ]
        _import(guest, tree, tag, changes)


def _build_postgres(
    guest: Guest, tag: str, recipe: str, suite: str = SUITE, major: int = 17
) -> None:
    """A real PostgreSQL from Debian packages (17 from Debian 13; 15 from Debian 12 for the
    upgrade test): debootstrap minbase + postgresql-MAJOR,
    trimmed (docs, the JIT's LLVM, the package's default cluster), plus an entrypoint
    that initialises a cluster like the official image does."""
    src = IMAGES_DIR / "postgres"
    tree = Path(tempfile.mkdtemp(prefix="postgres-build-", dir=guest.cache / "tmp"))
    try:
        tree.chmod(0o755)
        _sh(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "debootstrap",
                "--variant=minbase",
                f"--include=postgresql-{major}",
                suite,
                tree,
                host_mirror(),
            ],
            timeout=1800,
            log_to=guest.cache / "build.log",
        )
        trim = (
            "usr/share/doc/*",
            "usr/share/man/*",
            "usr/share/info/*",
            "usr/share/locale/*",
            "var/cache/apt/archives/*.deb",
            "var/lib/apt/lists/*_*",
            f"var/lib/postgresql/{major}",
            f"etc/postgresql/{major}",
            "usr/lib/*-linux-gnu/libLLVM*",
            "usr/lib/*-linux-gnu/libz3*",
            f"usr/lib/postgresql/{major}/lib/llvmjit*",
            f"usr/lib/postgresql/{major}/lib/bitcode",
            "dev/*",
            "var/log/*.log",
            "var/cache/debconf/*-old",
        )
        _sh(["sh", "-c", 'cd "$1" && shift && rm -rf -- $*', "sh", tree, *trim], timeout=120)
        entry = tree / "usr/local/bin/docker-entrypoint.sh"
        shutil.copyfile(src / "docker-entrypoint.sh", entry)
        entry.chmod(0o755)
        (tree / "docker-entrypoint-initdb.d").mkdir(exist_ok=True)
        pg_path = (
            f"/usr/lib/postgresql/{major}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
        )
        changes = [
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            f"ENV PATH={pg_path}",
            "ENV PGDATA=/var/lib/postgresql/data",
            f"ENV PG_MAJOR={major}",  # as the official image says (aistack migrate reads it)
            "ENV LANG=C.UTF-8",
            "EXPOSE 5432",
            "VOLUME /var/lib/postgresql/data",
            f"LABEL {IMAGE_LABEL}={recipe}",
        ]
        _import(guest, tree, tag, changes)
    finally:
        _remove_tree(tree)


# --------------------------------------------------------------------------- the agent


def build_deb(version: str | None = None, repo_root: Path = REPO_ROOT) -> Path:
    """Build the deb from this checkout (packaging/build.sh, nfpm from the venv). Two
    sessions at once take turns (build.sh stages in a fixed folder), and each gets its own
    copy, so one's rebuild never swaps the file under the other's install."""
    env = dict(os.environ)
    if version:
        env["AISTACK_VERSION"] = version
    (repo_root / "build").mkdir(exist_ok=True)
    with _locked(repo_root / "build" / ".deb.lock"):
        proc = subprocess.run(
            ["bash", "packaging/build.sh", "deb"], cwd=repo_root, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if proc.returncode:
            raise TestbedError(f"packaging/build.sh deb failed:\n{proc.stdout}\n{proc.stderr}")
        match = re.search(r"created package: (\S+\.deb)", proc.stdout + proc.stderr)
        if not match:
            raise TestbedError(f"no package in build output:\n{proc.stdout}\n{proc.stderr}")
        built = repo_root / match.group(1)
        mine = repo_root / "build" / "debs" / str(os.getpid()) / built.name
        mine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, mine)
    return mine


def install_agent_from_deb(guest: Guest, deb: Path) -> str:
    """`apt-get install ./aistack_*.deb` in the guest: its dependencies resolve from the
    Debian packages of the rootfs (the guest has no network). Returns apt's output."""
    guest.copy_in(deb, f"/tmp/{deb.name}")
    res = guest.run(
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--reinstall",
         "-o", "Dpkg::Options::=--force-confold", f"/tmp/{deb.name}"],
        timeout=300,
    )  # fmt: skip
    return str(res.stdout) + str(res.stderr)


# --------------------------------------------------------------------------- the stack

AGENT_UNIT = "aistack-agent.service"
STACK_SERVICES = ("postgres", "ollama", "litellm", "open-webui")


def stack_config(
    images: Mapping[str, str], postgres: str, head: str = "", ollama_extra: str = ""
) -> str:
    """agent.yaml for the stack on the stand-ins and the real PostgreSQL 17 image: `head`
    goes before the stack section (other sections), `ollama_extra` into stack.ollama."""
    return (
        head + "stack:\n  gpu: none\n"
        f"  ollama:\n    image: {images['ollama']}\n{ollama_extra}"
        f"  open_webui:\n    image: {images['open-webui']}\n"
        f"  litellm:\n    image: {images['litellm']}\n"
        f"  postgres:\n    image: {postgres}\n"
    )


NO_DB_MODEL = "local-llama"


def no_database_config(images: Mapping[str, str], head: str = "") -> str:
    """agent.yaml for the stack without PostgreSQL (what the real LiteLLM can run offline
    here): LiteLLM serving one model, NO_DB_MODEL, routed to Ollama's llama3.2:1b."""
    return (
        head + "stack:\n  gpu: none\n"
        f"  ollama:\n    image: {images['ollama']}\n"
        f"  open_webui:\n    image: {images['open-webui']}\n"
        f"  litellm:\n    image: {images['litellm']}\n"
        f"    model_list:\n      - model_name: {NO_DB_MODEL}\n"
        "        litellm_params: {model: ollama/llama3.2:1b, api_base: 'http://ollama:11434'}\n"
        "  postgres:\n    enabled: false\n"
    )


def start_stack(guest: Guest, deb: Path, config: str, up: bool = True) -> dict[str, Any] | None:
    """The agent installed from the deb with `config`, started, and (up=True) the stack
    applied with `aistack up --json`, whose report is returned."""
    install_agent_from_deb(guest, deb)
    guest.write_file("/etc/aistack/agent.yaml", config)
    guest.run(["systemctl", "start", "podman.socket"], timeout=60)
    guest.units_of_interest.update([AGENT_UNIT, *(f"{s}.service" for s in STACK_SERVICES)])
    guest.start(AGENT_UNIT, timeout=90)
    if not up:
        return None
    res = guest.run(["aistack", "up", "--json"], check=False, timeout=900)
    if res.returncode != 0:
        raise TestbedError(f"aistack up failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def remove_stack(guest: Guest, *extra_paths: str) -> None:
    """Undo start_stack: the stack down, the package purged, its state and secrets gone."""
    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"]
    guest.run(["aistack", "down"], check=False, timeout=300)
    # The network and volume units are oneshots that stay "active": stop them too, or a
    # later test's `podman network prune` leaves them active with no network behind.
    guest.run(["sh", "-c", "systemctl stop aistack-network.service '*-volume.service'"],
              check=False, timeout=120)  # fmt: skip
    guest.run([*apt, "purge", "aistack"], check=False, timeout=120)
    guest.run(["rm", "-rf", "/var/lib/aistack", "/etc/aistack", "/etc/containers/systemd/aistack",
               *extra_paths])  # fmt: skip
    guest.run(["podman", "secret", "rm", "--all"], check=False)
    guest.run(["systemctl", "daemon-reload"])
    guest.run(["systemctl", "stop", "podman.socket"], check=False)


# --------------------------------------------------------------------------- a private network

BRIDGE_NETNS_PREFIX = "aistack-fleet-"


def _netns_owner(name: str) -> int | None:
    """The pid of the session that made a bridge namespace (it is in the name)."""
    match = re.fullmatch(rf"{BRIDGE_NETNS_PREFIX}(\d+)-[0-9a-f]+", name)
    return int(match.group(1)) if match else None


def reap_stale_bridges() -> None:
    """Delete bridge namespaces whose session is gone (killed before its teardown ran), so
    they do not pile up; a live session's namespace is left alone."""
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = _netns_owner(name)
        if owner is not None and not _alive(owner):
            log.warning("deleting stale bridge namespace %s", name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@dataclasses.dataclass
class Bridge:
    """A private network between guests: a Linux bridge in a network namespace of its own
    (never the host's), one veth pair per guest, the guest's end moved into the guest's
    network namespace (nspawn --private-network gives it lo only) as eth0.

    Why: a fleet test needs hosts that reach each other over a real network, and nothing
    else: the only addresses on it are the bridge's (prefix.1, where a controller such as
    ansible-playbook runs via exec_argv()) and the guests'. Deleting the namespace removes
    the bridge and every veth pair (a pair goes with either end)."""

    netns: str
    prefix: str = "10.77.0"  # a /24
    members: dict[str, str] = dataclasses.field(default_factory=dict)  # guest -> address

    @classmethod
    def create(cls, prefix: str = "10.77.0") -> Bridge:
        reap_stale_bridges()
        bridge = cls(f"{BRIDGE_NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}", prefix)
        _sh(["ip", "netns", "add", bridge.netns], timeout=30)
        try:
            ns = ["ip", "-n", bridge.netns]
            _sh([*ns, "link", "set", "lo", "up"], timeout=30)
            _sh([*ns, "link", "add", "br0", "type", "bridge"], timeout=30)
            _sh([*ns, "addr", "add", f"{bridge.address}/24", "dev", "br0"], timeout=30)
            _sh([*ns, "link", "set", "br0", "up"], timeout=30)
        except BaseException:
            bridge.teardown()
            raise
        return bridge

    @property
    def address(self) -> str:
        """The bridge's own address: where a controller in exec_argv() comes from."""
        return f"{self.prefix}.1"

    def exec_argv(self) -> list[str]:
        """Prefix for a host command that runs on this network (and only on it)."""
        return ["ip", "netns", "exec", self.netns]

    def attach(self, guest: Guest, host: int) -> str:
        """Give guest the address prefix.host on the bridge (as eth0); returns it."""
        if not 2 <= host <= 254:
            raise TestbedError(f"host part {host} is not in 2..254")
        address = f"{self.prefix}.{host}"
        ns = ["ip", "-n", self.netns]
        outer, inner = f"vb{host}", f"vg{host}"
        _sh([*ns, "link", "add", outer, "type", "veth", "peer", "name", inner], timeout=30)
        _sh([*ns, "link", "set", outer, "master", "br0", "up"], timeout=30)
        _sh([*ns, "link", "set", inner, "netns", str(guest.pid)], timeout=30)
        guest.run(["ip", "link", "set", inner, "name", "eth0"])
        guest.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
        guest.run(["ip", "link", "set", "eth0", "up"])
        self.members[guest.name] = address
        return address

    def processes(self) -> list[int]:
        """Pids of the processes still in the namespace (ssh masters of a controller)."""
        res = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def teardown(self) -> None:
        """Stop what still runs in the namespace (started by this session's commands on
        it), then delete it: the bridge and the veth pairs go with it."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                              timeout=30).stdout  # fmt: skip
        if any(line.split()[:1] == [self.netns] for line in left.splitlines()):
            raise TestbedError(f"network namespace {self.netns} is still there")


def start_sshd(guest: Guest, public_key: str) -> None:
    """Let root in over SSH with public_key only (a controller such as Ansible), and start
    the guest's sshd (openssh-server is in the rootfs for this)."""
    guest.write_file("/root/.ssh/authorized_keys", public_key.strip() + "\n", mode=0o600)
    guest.run(["chmod", "700", "/root/.ssh"])
    guest.run(["systemctl", "restart", "ssh.service"], timeout=60)
    guest.units_of_interest.add("ssh.service")


# --------------------------------------------------------------------------- CLI


# A login shell with the guest's environment, not the caller's.
SHELL_ARGV = ("env", "-i", "HOME=/root", "TERM=xterm-256color", "LANG=C.UTF-8", "bash", "-l")


def up_guest(cache: Path) -> Guest | None:
    """The persistent guest that `up` left running, if any (alive or not)."""
    state = cache / "guests" / f"{UP_NAME}.json"
    return Guest.from_state(state) if state.exists() else None


def up(cache: Path) -> Guest:
    """Boot the persistent guest with every image loaded, or return the one already up."""
    current = up_guest(cache)
    if current and current.alive():
        return current
    if current:
        current.teardown(timeout=15, check=False)
    guest = boot_guest(UP_NAME, cache, persistent=True)
    for name in IMAGE_TAGS:
        ensure_image(guest, name)
    return guest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.testbed", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "shell", "status"])
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    cache = cache_dir()
    current = up_guest(cache)
    if args.command == "build":
        started = time.monotonic()
        guest = boot_guest(cache=cache)
        try:
            for name in IMAGE_TAGS:
                ensure_image(guest, name)
        finally:
            guest.teardown()
        print(f"rootfs and images cached in {cache} ({time.monotonic() - started:.0f} s)")
    elif args.command == "up":
        if current and current.alive():
            print(f"already up: {shlex.join([*current.nsenter_argv(), *SHELL_ARGV])}")
            return 0
        guest = up(cache)
        print(
            f"guest {guest.name} is up; enter it with:\n  {shlex.join(guest.nsenter_argv())} bash"
        )
    elif args.command == "down":
        if not current:
            print("no guest is up")
            return 0
        report = current.teardown(check=False)
        print(f"guest {current.name} down; clean={report.clean} {report}")
        return 0 if report.clean else 1
    elif args.command == "shell":
        if not current or not current.alive():
            print("no guest is up (python -m tests.e2e.testbed up)", file=sys.stderr)
            return 1
        print(shlex.join([*current.nsenter_argv(), *SHELL_ARGV]))
    else:
        print(f"cache {cache}: rootfs {rootfs_problem(cache) or 'ok'}")
        for tar in sorted((cache / "images").glob("*.tar")):
            print(f"  image {tar.name} {tar.stat().st_size // 2**20} MiB")
        if not current or not current.alive():
            print("guest: not up")
            return 0
        state = current.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        print(f"guest {current.name}: pid {current.pid}, {state}")
        print(current.podman("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Status}}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
