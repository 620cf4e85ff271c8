"""Apply the stack: render, check, plan, then carry the plan out through the gateways.

render -> validate (keys of the target Podman; a render error changes nothing) -> secrets
-> `plan()` (plan.py: pure, unit-tested without a host) -> `execute()`: stop services the
config dropped, atomic writes of changed files into the agent's own unit folder and
removal of dropped ones, daemon-reload over D-Bus, start what is not running and restart
what changed, in dependency order, each job followed to its end (Notify=healthy: "done"
means healthy) -> a report of what happened and what did not come up. Applying the same
config twice changes and restarts nothing.

Blocking (systemd over pystemd, Podman over its socket): the daemon runs it in a thread.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from .. import podman_api, systemd_ctl
from ..atomic import write_atomic
from ..config import AgentConfig
from . import extra, models, secrets
from .facts import host_facts
from .model import START_TIMEOUT, STOP_TIMEOUT, unit_of
from .plan import Plan, plan, planned, read_installed
from .render import LITELLM_CONFIG, ExtraUnits, RenderError, render

log = structlog.get_logger(component="stack.apply")


@dataclass
class ApplyReport:
    ok: bool = True
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    purged_volumes: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


GENERATORS = (
    Path("/usr/lib/systemd/system-generators/podman-system-generator"),
    Path("/usr/libexec/podman/quadlet"),
)


def generator_check(files: dict[str, str], generators: tuple[Path, ...] = GENERATORS) -> list[str]:
    """Podman's own quadlet generator, where installed, over the rendered files (--dryrun):
    what it rejects is reported before anything on the host changes."""
    generator = next((g for g in generators if g.exists()), None)
    if generator is None:
        return []
    with tempfile.TemporaryDirectory(prefix="aistack-render-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        env = {**os.environ, "QUADLET_UNIT_DIRS": tmp}
        try:
            proc = subprocess.run([str(generator), "--dryrun"], env=env, capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [f"{generator} --dryrun could not run: {exc}"]
    if proc.returncode == 0:
        return []
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return [f"{generator.name} --dryrun: {line}" for line in lines[-5:]] or [
        f"{generator.name} --dryrun failed ({proc.returncode})"
    ]


def _pull_declared(
    config: AgentConfig, report: ApplyReport, progress: Callable[[str], None]
) -> None:
    """Pull the models stack.ollama.models declares that Ollama does not have yet."""
    base = config.gpu.ollama_url
    try:
        for name in models.missing(base, config.stack.ollama.models):
            progress(f"pulling model {name}")
            models.pull_all(base, name, lambda step: None)
            report.pulled.append(name)
    except models.OllamaError as exc:
        report.ok = False
        report.failed["ollama models"] = str(exc)


def execute(
    todo: Plan,
    unit_dir: Path,
    socket: Path,
    report: ApplyReport,
    progress: Callable[[str], None],
) -> None:
    """Carry out a Plan through the gateways, recording each outcome in `report`."""
    # Services the config dropped: stop them before their units disappear.
    for name in todo.stop:
        progress(f"stopping {name} (no longer in the config)")
        outcome = systemd_ctl.stop(unit_of(name), STOP_TIMEOUT)
        if outcome.ok:
            report.stopped.append(name)
        else:
            report.ok = False
            report.failed[name] = f"stop {outcome.result}"
    for volume in todo.purge_volumes:
        if podman_api.volume_delete(socket, volume):
            report.purged_volumes.append(volume)

    # Write what changed (atomically), remove what is no longer rendered.
    unit_dir.mkdir(parents=True, exist_ok=True)
    LITELLM_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    for path, text in todo.write.items():
        write_atomic(path, text.encode(), mode=0o644)
        report.written.append(str(path))
    for path in todo.remove:
        path.unlink(missing_ok=True)
        report.removed.append(str(path))
    if todo.daemon_reload:
        progress("systemctl daemon-reload")
        systemd_ctl.daemon_reload()

    # Start or restart, in dependency order; Notify=healthy makes "done" mean healthy.
    report.unchanged.extend(todo.unchanged)
    for step in todo.start:
        unit = unit_of(step.service)
        progress(f"{step.action}ing {step.service} (waits until healthy)")
        job = systemd_ctl.restart if step.action == "restart" else systemd_ctl.start
        outcome = job(unit, START_TIMEOUT)
        if outcome.ok:
            (report.restarted if step.action == "restart" else report.started).append(step.service)
        else:
            report.ok = False
            report.failed[step.service] = (
                f"{step.action} {outcome.result} (unit {outcome.active_state}/"
                f"{outcome.sub_state}); see: journalctl -u {unit}"
            )


def apply(
    config: AgentConfig,
    *,
    purge_data: bool = False,
    secrets_dir: Path = secrets.SECRETS_DIR,
    progress: Callable[[str], None] = lambda line: None,
) -> ApplyReport:
    began = time.monotonic()
    report = ApplyReport()
    stack = config.stack
    socket = config.watch.podman_socket
    try:
        facts = host_facts(config)
        extras = extra.load(stack, facts.podman)  # the compose files, read again now
        if extras.problems:
            raise RenderError(list(extras.problems.values()))
        rendered = render(stack, facts, extras=ExtraUnits(extras.files, extras.services))
    except RenderError as exc:
        report.ok, report.problems = False, exc.problems
        return report
    report.warnings = list(rendered.warnings)
    if problems := generator_check(dict(rendered.files)):
        report.ok, report.problems = False, problems
        return report
    unit_dir = stack.unit_dir
    installed = read_installed(planned(rendered, unit_dir), unit_dir)

    try:
        secret_changed = secrets.ensure(stack, socket, secrets_dir)
    except secrets.SecretsError as exc:
        report.ok, report.problems = False, [str(exc)]
        return report

    states = systemd_ctl.unit_states(unit_of(s) for s in rendered.services)
    active = {unit: st.active_state for unit, st in states.items()}
    todo = plan(rendered, unit_dir, installed, active, secret_changed, purge_data)
    execute(todo, unit_dir, socket, report, progress)
    if stack.ollama.enabled and stack.ollama.models and "ollama" not in report.failed:
        _pull_declared(config, report, progress)
    report.seconds = round(time.monotonic() - began, 3)
    log.info("stack applied", **{k: v for k, v in report.as_dict().items() if v})
    return report
