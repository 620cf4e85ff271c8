"""`aistack-agent`: the daemon's lifecycle.

Start: config (exit 78 when invalid), API token, watchers, first snapshots, API socket
bound, then READY=1. Run: watchdog pings, STATUS= updates, SIGHUP reloads (an invalid
new config keeps the old one). Stop on SIGTERM/SIGINT: STOPPING=1, tasks cancelled,
sockets closed, exit 0 within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from . import __version__, notify
from .api import ApiContext, ReloadResult, create_app
from .api_guard import KEEPALIVE_S, ConnectionGuard, GuardedSite
from .backup.scheduler import BackupService
from .config import EX_CONFIG, AgentConfig, ConfigError, load_config, resolve_path
from .heal.healer import Healer
from .heal.xid import restart_view
from .log import setup_logging
from .metrics import build_registry
from .snapshot import SnapshotStore
from .stack.actuator import Act, Actuator
from .stack.control import StackControl
from .stack.startup_checks import StartupChecks
from .status import AgentInfo, summary
from .token import TokenError, ensure_token
from .watchers import GpuWatcher, PodmanWatcher, SystemdWatcher, Watcher
from .watchers.backends import BackendWatcher
from .watchers.events import ContainerEvent, PodmanEventStream
from .watchers.probes import ProbeWatcher
from .watchers.stack import StackWatcher
from .watchers.unit_signals import UnitSignals

EX_OK = 0
EX_UNAVAILABLE = 69  # the API address cannot be bound
EX_CANTCREAT = 73  # the token file cannot be created or read
# Each API connection's protocol: no access log; auto_decompress off, so a compressed
# body is refused (415) and never inflated; idle keep-alive closed after KEEPALIVE_S.
HANDLER_OPTIONS: dict[str, Any] = {
    "access_log": None,
    "auto_decompress": False,
    "keepalive_timeout": KEEPALIVE_S,
}
SHUTDOWN_GRACE = 2.0  # seconds for tasks and open connections; SIGTERM must end < 5 s
EXIT_CLEANUP = 2.0  # at most, for clean-up threads still running after the loop closed

log = structlog.get_logger(component="agent")


class BindError(Exception):
    pass


class Agent:
    def __init__(self, config: AgentConfig, config_path: Path, explicit: bool) -> None:
        self.config = config
        self.config_path = config_path
        self.explicit = explicit
        self.info = AgentInfo(config_path=str(config_path))
        self.store = SnapshotStore()
        # The one part that acts on the stack's services: the healer, a person's actions
        # and the GPU rule share it (one lock per service, one record, one metric).
        self.actuator = Actuator()
        self.stack_watcher = StackWatcher(self.store, config.watch)
        self.probe_watcher = ProbeWatcher(self.store, config.watch)
        # The front's remote Ollamas (docs/fleet.md); publishes an empty view without any.
        self.backend_watcher = BackendWatcher(self.store, config.watch)
        self.watchers: list[Watcher] = [
            PodmanWatcher(self.store, config.watch),
            SystemdWatcher(self.store, config.watch),
            GpuWatcher(self.store, config.watch, last_restart=self._last_gpu_restart),
            self.stack_watcher,
            self.probe_watcher,
            self.backend_watcher,
        ]
        for watcher in self.watchers:
            watcher.configure(config)
        self.stack_control = StackControl(
            lambda: self.config,
            self._stack_changed,
            lambda service: self.healer.manual_reset(service),
            self.actuator,
        )
        self.healer = Healer(
            self.store, config, hold=lambda: self.stack_control.busy, actuator=self.actuator
        )
        self.actuator.listen(self._acted)
        # Event sources: they only wake watchers, which then look for themselves; the
        # periodic polls stay the reconcile that makes a lost event harmless.
        self.events = PodmanEventStream(
            config.watch.podman_socket, self._on_container_event, self._on_events_state,
            wanted=self.stack_watcher.is_service,
        )  # fmt: skip
        # Runs a starting container's startup health check early (one task per start).
        self.startup_checks = StartupChecks(
            config.watch.podman_socket, config.watch.startup_check_interval
        )
        self.signals = UnitSignals(
            self.stack_watcher.units, self.stack_watcher.on_unit_change, self._on_signals_state
        )
        self.registry = build_registry(self.info, self.store.latest)
        self.backups = BackupService(self.store, config.backups, config.watch, stack=config.stack)
        self._token = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._guard: ConnectionGuard | None = None

    @property
    def listen(self) -> str:
        api = self.config.api
        host = f"[{api.listen}]" if ":" in api.listen else api.listen
        return f"{host}:{api.port}"

    @property
    def _slow_sources(self) -> tuple[Watcher, ...]:
        return (self.probe_watcher, self.backend_watcher)

    def _watcher(self, source: str) -> Watcher | None:
        return next((w for w in self.watchers if w.source == source), None)

    def _last_gpu_restart(self) -> dict[str, Any] | None:
        """The GPU rule's last restart of Ollama, for the gpu snapshot's `ollama.restart`."""
        return restart_view(self.actuator, self.config.gpu.ollama_unit)

    def _acted(self, act: Act) -> None:
        """After any action: the stack is looked at again at once (a heal's result shows in
        /status), and the service's new container is probed soon, not in probe_interval."""
        self.stack_watcher.wake()
        self.probe_watcher.wake()

    async def _stack_changed(self) -> None:
        """After a person's apply or action, before it answers: the stack is looked at
        again, then probed (the answer and the /status after it agree: no "no container"
        from a probe round of before the start), and backups decide again
        (`backups.enabled: auto` turns on once the stack's PostgreSQL is applied)."""
        self.backups.wake()
        await self.stack_watcher.refresh()
        await self.probe_watcher.refresh()  # reads the stack's new snapshot: after it

    def _on_container_event(self, event: ContainerEvent) -> None:
        changed = self.stack_watcher.on_container_event(event)
        self.startup_checks.on_event(event.name, event.action, event.health)
        if changed and event.action == "health_status" and event.health == "healthy":
            self.probe_watcher.wake()  # a service just came up: probe it now, not in 30s

    def _on_events_state(self, connected: bool, reason: str | None) -> None:
        """The event stream dropping is the first sign of Podman going away: look now."""
        log.info("podman event stream", connected=connected, reason=reason)
        for source in ("podman", "stack"):
            if (watcher := self._watcher(source)) is not None:
                watcher.wake()

    def _on_signals_state(self, connected: bool, reason: str | None) -> None:
        log.info("systemd signal subscription", connected=connected, reason=reason)
        for source in ("systemd", "stack"):
            if (watcher := self._watcher(source)) is not None:
                watcher.wake()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task died", task=task.get_name(), error=repr(task.exception()))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload_task(), "reload"))
        try:
            self._token = ensure_token(self.config.api.token_file)
        except TokenError as exc:
            log.error("cannot start", error=str(exc))
            return EX_CANTCREAT
        async with self._reload_lock:  # a SIGHUP during start-up waits for READY
            for watcher in self.watchers:
                self._spawn(watcher.run(), f"watch.{watcher.source}")
            self._spawn(self.backups.run(), "backups")  # scheduler + its own watcher
            self._spawn(self.events.run(), "events.podman")
            self._spawn(self.signals.run(), "events.systemd")
            self._spawn(self.healer.run(), "heal")
            first = await self.store.wait_for(
                # Not the probes, nor the remote backends: they may take their timeouts
                # (a GPU host that does not answer); READY must not wait on them.
                [
                    *(w.source for w in self.watchers if w not in self._slow_sources),
                    "backups",
                ],
                within=self.config.watch.timeout + 1.0,
            )
            if not first:
                log.warning("not every source published a first snapshot in time")
            context = ApiContext(
                self.info,
                self.store,
                self.registry,
                lambda: self._token,
                self.reload,
                self.backups,
                self.stack_control,
                failed_status=lambda: self.config.api.failed_status_code,
                allowed_hosts=lambda: self.config.api.allowed_hosts,
            )
            api = self.config.api
            self._guard = ConnectionGuard(api.max_connections, api.request_timeout)
            app = create_app(context, max_body_size=api.max_body_size, guard=self._guard)
            self._runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE, **HANDLER_OPTIONS)
            await self._runner.setup()
            try:
                self._site = await self._bind(self.config)
            except BindError as exc:
                log.error("cannot start", error=str(exc))
                await self._shutdown()
                return EX_UNAVAILABLE
            self._spawn(self._guard.run(), "api-guard")
            notify.ready(summary(self.store.latest(), self.listen))
            log.info("agent ready", version=__version__, listen=self.listen,
                     config=str(self.config_path))  # fmt: skip
            self._spawn(self._publish_status(), "sd-status")
            interval = notify.watchdog_interval()
            if interval:
                self._spawn(notify.watchdog_loop(interval), "watchdog")
        await self._stop.wait()
        log.info("stopping on signal")
        notify.stopping()
        await self._shutdown()
        log.info("stopped")
        return EX_OK

    async def _bind(self, config: AgentConfig) -> web.BaseSite:
        assert self._runner is not None and self._guard is not None
        site = GuardedSite(
            self._runner, config.api.listen, config.api.port, self._guard, HANDLER_OPTIONS
        )
        try:
            await site.start()
        except OSError as exc:
            where = f"{config.api.listen}:{config.api.port}"
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BindError(
                f"cannot listen on {where}: {why} (is another aistack-agent running? "
                "set api.port to another port)"
            ) from None
        return site

    async def _shutdown(self) -> None:
        self.startup_checks.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _publish_status(self) -> None:
        """Keep systemd's STATUS= line in step with the snapshots."""
        changed = self.store.subscribe()
        last = ""
        while True:
            await changed.wait()
            changed.clear()
            line = summary(self.store.latest(), self.listen)
            if line != last:
                notify.status(line)
                last = line

    async def _reload_task(self) -> None:
        await self.reload()

    async def reload(self) -> ReloadResult:
        """Re-read the config file; apply it whole or not at all."""
        path = str(self.config_path)
        async with self._reload_lock:
            notify.reloading()
            log.info("reloading configuration", config=path)
            try:
                new = load_config(self.config_path, must_exist=self.explicit)
                token = ensure_token(new.api.token_file)
            except (ConfigError, TokenError) as exc:
                problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
                log.error("reload refused; the running config is unchanged", problems=problems)
                notify.ready(summary(self.store.latest(), self.listen))
                return ReloadResult(False, path, tuple(problems))
            old = self.config
            if (new.api.listen, new.api.port) != (old.api.listen, old.api.port):
                try:
                    site = await self._bind(new)
                except BindError as exc:
                    log.error("reload refused; the running config is unchanged", error=str(exc))
                    notify.ready(summary(self.store.latest(), self.listen))
                    return ReloadResult(False, path, (str(exc),))
                if self._site is not None:
                    await self._site.stop()
                self._site = site
            if new.api.max_body_size != old.api.max_body_size:
                log.warning("api.max_body_size takes effect at the next restart")
            if self._guard is not None:  # connection bounds follow a reload at once
                self._guard.max_connections = new.api.max_connections
                self._guard.request_timeout = new.api.request_timeout
            if new.watch.podman_socket != old.watch.podman_socket:
                log.warning("the event stream follows watch.podman_socket at the next restart")
            self.config, self._token = new, token
            self.startup_checks.interval = new.watch.startup_check_interval
            setup_logging(new.logging.level, new.logging.format)
            for watcher in self.watchers:
                watcher.configure(new)
            self.backups.reconfigure(new.backups, new.watch, new.stack)
            self.healer.configure(new, reloaded=True)
            self.signals.refresh()  # services enabled or disabled: match their units
            log.info("configuration reloaded", config=path, listen=self.listen)
            notify.ready(summary(self.store.latest(), self.listen))
            return ReloadResult(True, path)


def build_parser() -> argparse.ArgumentParser:
    """The command line, public so packaging/docs.py can write aistack-agent(8) from it."""
    parser = argparse.ArgumentParser(
        prog="aistack-agent",
        description="The aistack host agent: watches the AI stack's containers, systemd units "
        "and GPUs, and serves a local API and Prometheus metrics. Normally started by systemd "
        "(aistack-agent.service); run by hand for debugging.",
        epilog="Config: --config, else $AISTACK_CONFIG, else /etc/aistack/agent.yaml "
        "(built-in defaults when that file does not exist). Signals: SIGHUP reloads the "
        "config, SIGTERM stops. Exit codes: 0 stopped cleanly, 69 API address unavailable, "
        "73 token file unusable, 78 invalid config.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file to use")
    parser.add_argument(
        "--init",
        action="store_true",
        help="create the API token file (0600) if it is missing, print its path, and exit; "
        "the package's install script runs this",
    )
    parser.add_argument("--version", action="version", version=f"aistack-agent {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path, explicit = resolve_path(args.config)
    try:
        config = load_config(path, must_exist=explicit)
    except ConfigError as exc:
        print(f"aistack-agent: {exc.render()}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(config.logging.level, config.logging.format)
    if args.init:
        try:
            ensure_token(config.api.token_file)
        except TokenError as exc:
            print(f"aistack-agent: {exc}", file=sys.stderr)
            return EX_CANTCREAT
        print(config.api.token_file)
        return EX_OK
    if not explicit and not path.exists():
        log.info("no config file; using built-in defaults", config=str(path))
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aistack-io")
    loop.set_default_executor(executor)
    try:
        code = loop.run_until_complete(Agent(config, path, explicit).run())
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            loop.close()
    # Clean-up threads (e.g. killing a tool inside a container) get a bounded moment to
    # finish; then a blocking client call (D-Bus, Podman) stuck in a worker thread must not
    # hold the process past systemd's stop timeout: the agent's own state is closed.
    deadline = time.monotonic() + EXIT_CLEANUP
    for thread in threading.enumerate():
        if thread.name.endswith("-kill") and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threading.enumerate() if t.name.startswith("aistack-io")):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
