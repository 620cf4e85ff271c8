"""Where the PostgreSQL client tools run: a `DumpSource`.

A source starts one client tool (pg_dump, pg_dumpall, pg_restore, psql) with the
connection options it knows, optionally feeding a file to its stdin and handing its
stdout back in chunks; stderr is kept (bounded) for the report, and the exit status is
always checked by the caller. Two real implementations:

- `LocalSource`: the tools of this host, as local processes, against host:port with a
  password from a file (passed in the environment, never on a command line). For a
  PostgreSQL that is not containerised, and for the tests against a real local server.
- `PodmanExecSource`: the tools inside the PostgreSQL container, through the libpod API
  (`podman_api`): the server's own pg_dump, over the container's local socket.

Everything here blocks; the pipeline runs it in threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from .. import podman_api
from ..config import BackupConfig

log = structlog.get_logger(component="backup")

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
CONNECTING_TOOLS = frozenset({"pg_dump", "pg_dumpall", "pg_restore", "psql"})


class StderrTail:
    """Keep the start and the end of a tool's stderr, whatever its length."""

    def __init__(self, head: int = 8192, tail: int = 57344) -> None:
        self._head = bytearray()
        self._tail = bytearray()
        self._head_max, self._tail_max = head, tail
        self._skipped = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self._lock:
            room = self._head_max - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            self._tail += data
            if len(self._tail) > self._tail_max:
                cut = len(self._tail) - self._tail_max
                self._skipped += cut
                del self._tail[:cut]

    def text(self) -> str:
        with self._lock:
            gap = f"\n[... {self._skipped} bytes left out ...]\n" if self._skipped else ""
            return (bytes(self._head).decode(errors="replace") + gap
                    + bytes(self._tail).decode(errors="replace")).strip()  # fmt: skip


@dataclass(frozen=True)
class ToolResult:
    tool: str
    exit_code: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.exit_code < 0:
            try:
                name = signal.Signals(-self.exit_code).name
            except ValueError:
                name = str(-self.exit_code)
            return f"{self.tool} was killed by {name}"
        return f"{self.tool} exited with status {self.exit_code}"

    def first_error(self) -> str:
        """The most telling stderr line, for a one-line report."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for line in lines:
            if "error" in line.lower() or "fatal" in line.lower():
                return line
        return lines[-1] if lines else ""


class Running(Protocol):
    """One started tool."""

    def read(self, n: int) -> bytes:
        """Up to n bytes of stdout; b"" at its end (or when stdout was not captured)."""
        ...

    def wait(self) -> ToolResult:
        """Wait for the exit; drains what is left of the output first."""
        ...

    def abort(self) -> None:
        """Stop the tool now; safe from any thread, any number of times."""
        ...


class DumpSource(Protocol):
    description: str

    def start(
        self,
        tool: str,
        args: Sequence[str],
        *,
        stdin: Path | None = None,
        capture_stdout: bool = False,
        connect: bool = True,
    ) -> Running: ...


def _grow_pipe(fd: int) -> None:
    """1 MiB pipe: fewer wake-ups per GB (best effort: capped by pipe-max-size)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)


# --- local processes -------------------------------------------------------------------


class _LocalRunning:
    def __init__(self, tool: str, proc: subprocess.Popen[bytes]) -> None:
        self.tool = tool
        self.proc = proc
        self.stderr = StderrTail()
        self._reader = threading.Thread(
            target=self._drain_stderr, name=f"backup-{tool}-stderr", daemon=True
        )
        self._reader.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self.stderr.add(chunk)

    def read(self, n: int) -> bytes:
        if self.proc.stdout is None:
            return b""
        try:
            return os.read(self.proc.stdout.fileno(), n)
        except ValueError:  # closed by abort()
            return b""

    def wait(self) -> ToolResult:
        if self.proc.stdout is not None:
            while self.read(CHUNK):
                pass
        code = self.proc.wait()
        self._reader.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return ToolResult(self.tool, code, self.stderr.text())

    def abort(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class LocalSource:
    """The PostgreSQL client tools of this host, connecting to host:port."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password_file: Path | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self.password_file = password_file
        self.bin_dir = bin_dir
        self.description = f"local {host}:{port}"

    def _tool(self, tool: str) -> str:
        if self.bin_dir is not None:
            return str(self.bin_dir / tool)
        found = shutil.which(tool)
        if found is None:
            raise FileNotFoundError(
                f"{tool} not found on this host (install the PostgreSQL client, e.g. "
                "apt install postgresql-client, or use backups.source: podman)"
            )
        return found

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGCONNECT_TIMEOUT="15", PGAPPNAME="aistack-backup", LC_MESSAGES="C")
        if self.password_file is not None:
            with contextlib.suppress(FileNotFoundError):
                env["PGPASSWORD"] = self.password_file.read_text().rstrip("\r\n")
        return env

    def start(
        self,
        tool: str,
        args: Sequence[str],
        *,
        stdin: Path | None = None,
        capture_stdout: bool = False,
        connect: bool = True,
    ) -> Running:
        argv = [self._tool(tool)]
        if connect and tool in CONNECTING_TOOLS:
            argv += ["-h", self.host, "-p", str(self.port), "-U", self.user, "-w"]
        argv += list(args)
        with contextlib.ExitStack() as stack:
            infile = stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
            proc = subprocess.Popen(
                argv,
                stdin=infile,
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self._env(),
                close_fds=True,
            )
        if proc.stdout is not None:
            _grow_pipe(proc.stdout.fileno())
        return _LocalRunning(tool, proc)


# --- inside the container, through the Podman API ---------------------------------------


class _ExecRunning:
    def __init__(
        self,
        source: PodmanExecSource,
        tool: str,
        exec_id: str,
        stream: podman_api.ExecStream,
        stdin: Path | None,
    ) -> None:
        self.tool = tool
        self.source = source
        self.exec_id = exec_id
        self.stream = stream
        self.stderr = StderrTail()
        self._aborted = threading.Event()
        self._done = False
        self._feed_error: OSError | None = None
        self._feeder: threading.Thread | None = None
        self._killer: threading.Thread | None = None
        if stdin is not None:
            self._feeder = threading.Thread(
                target=self._feed, args=(stdin,), name=f"backup-{tool}-stdin", daemon=True
            )
            self._feeder.start()

    def _feed(self, path: Path) -> None:
        try:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    if self._aborted.is_set():
                        return
                    self.stream.send(chunk)
        except OSError as exc:  # the tool exited early (EPIPE) or we aborted
            self._feed_error = exc
        finally:
            self.stream.close_stdin()

    def read(self, n: int) -> bytes:
        """Stdout frames, joined up to about n bytes (frames are small, 8 KiB)."""
        parts: list[bytes] = []
        size = 0
        while size < n and not self._done:
            try:
                frame = self.stream.demux.frame()
            except (OSError, ValueError) as exc:
                if self._aborted.is_set():
                    self._done = True
                    break
                raise podman_api.PodmanApiError(f"exec stream broke: {exc}") from None
            if frame is None:
                self._done = True
                break
            kind, payload = frame
            if kind == podman_api.STDERR:
                self.stderr.add(payload)
            elif kind == podman_api.STDOUT and payload:
                parts.append(payload)
                size += len(payload)
        if self._done and self._aborted.is_set():
            self._join_killer()
        return b"".join(parts)

    def wait(self) -> ToolResult:
        while not self._done:
            self.read(CHUNK)
        if self._feeder is not None:
            self._feeder.join()
        self.stream.close()
        if self._aborted.is_set():
            self._join_killer()
            return ToolResult(self.tool, -signal.SIGKILL, self.stderr.text())
        code = podman_api.exec_exit_code(self.source.socket, self.exec_id)
        return ToolResult(self.tool, code, self.stderr.text())

    def abort(self) -> None:
        """Close the connection, and kill the process: a pg_dump whose reader is gone
        would otherwise run on inside the container until it finished."""
        if self._aborted.is_set():
            return
        self._aborted.set()
        self.stream.abort()
        # An API call: not on the caller's thread, which may be the event loop. The reader
        # (the pump thread, which the pipeline waits for) waits for it in turn. Not a
        # daemon thread: when the agent is stopping, the interpreter must let it finish
        # (a couple of seconds at most), or pg_dump would outlive the agent in the
        # container (seen under load: the process exited before the kill was sent).
        self._killer = threading.Thread(target=self._kill, name=f"backup-{self.tool}-kill")
        self._killer.start()

    def _join_killer(self) -> None:
        if self._killer is not None:
            self._killer.join(5)

    def _kill(self) -> None:
        try:
            info = podman_api.exec_inspect(self.source.socket, self.exec_id, timeout=2)
            pid = info.get("Pid")
            if info.get("Running") and isinstance(pid, int) and pid > 1:
                os.kill(pid, signal.SIGKILL)  # the host PID of the exec'd process
                log.info("stopped the tool in the container", tool=self.tool, pid=pid)
        except Exception as exc:
            log.warning("could not stop the tool in the container", tool=self.tool,
                        error=str(exc))  # fmt: skip


class PodmanExecSource:
    """The client tools inside the PostgreSQL container (its local socket, its user)."""

    def __init__(self, socket: Path, container: str, user: str) -> None:
        self.socket = socket
        self.container = container
        self.user = user
        self.description = f"podman container {container}"

    def start(
        self,
        tool: str,
        args: Sequence[str],
        *,
        stdin: Path | None = None,
        capture_stdout: bool = False,
        connect: bool = True,
    ) -> Running:
        cmd = [tool]
        if connect and tool in CONNECTING_TOOLS:
            cmd += ["-U", self.user, "-w"]
        cmd += list(args)
        env = ["PGAPPNAME=aistack-backup", "LC_MESSAGES=C"]
        exec_id = podman_api.exec_create(
            self.socket, self.container, cmd, env, stdin=stdin is not None, stdout=capture_stdout
        )
        stream = podman_api.ExecStream(self.socket, exec_id)
        return _ExecRunning(self, tool, exec_id, stream, stdin)


def make_source(config: BackupConfig, podman_socket: Path) -> DumpSource:
    if config.source == "local":
        return LocalSource(config.host, config.port, config.user, config.password_file)
    return PodmanExecSource(podman_socket, config.container, config.user)
