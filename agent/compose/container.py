"""One compose service -> one `.container` unit.

Each compose key has a handler below that writes the quadlet keys meaning the same,
using only keys the target Podman accepts: when a key is newer than the target, the
handler falls back to the `podman run` flag in `PodmanArgs=` (documented as equivalent
in podman-systemd.unit(5)); when there is no equivalent at all, the key is reported as
lossy with the reason. Keys are written in a fixed order, maps sorted by key, so the
output only changes when the compose project does.

Env and label files are read through the project's bounded reader and parsed once per
project, and all units together hold at most MAX_UNIT_VALUES values and MAX_UNIT_CHARS
characters: a 4 MiB env file named by ten thousand services must not become 40 GB of
units. A value of a shape no handler expected is a ComposeError naming its key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..quadlet import PodmanVersion, UnitFile, UnitValueError, first_version, supports
from . import dotenv
from .errors import ComposeError, visible
from .header import HEADER_LEAD
from .loader import Project
from .report import Report
from .values import (
    command_words,
    go_duration,
    local_image,
    parse_bytes,
    parse_duration,
    podman_size,
    port_count,
    qualify_image,
    scalar,
    whole_seconds,
)

C = "Container"

# Value-level features newer than the key that carries them (the key table cannot say).
NOTIFY_HEALTHY_SINCE = PodmanVersion(5, 0)  # Notify=healthy (podman run --sdnotify=healthy)
HOST_GATEWAY_SINCE = PodmanVersion(5, 3)  # --add-host NAME:host-gateway
SECRET_REPLACE_SINCE = PodmanVersion(4, 7)  # podman secret create --replace

# systemd gives a service 90 s to start by default; the first start pulls the image,
# which for an AI stack is several GB.
START_TIMEOUT_S = 900
# systemd's default stop timeout; a longer stop_grace_period needs TimeoutStopSec= too.
SYSTEMD_STOP_TIMEOUT_S = 90
RESTART_DELAY = "5s"

MAX_UNIT_CHARS = 64 << 20  # the values of all units of a project together
MAX_UNIT_VALUES = 200_000  # values (Environment=, Label=...) of all units together
MAX_GPUS = 1024  # a `count:` of GPUs becomes one AddDevice= per index

_PODMAN = "/usr/bin/podman"
_SWARM_ONLY = "only used by Docker Swarm; `docker compose up` ignores it too"


def unit_header(project: Project, what: str, files: Sequence[Path] | None = None) -> list[str]:
    """The comment at the top of every generated file: where it came from. A path is
    quoted when it holds a line break, a control character or a backslash, which could
    otherwise end the comment line and start a key of the unit."""
    sources = " + ".join(dict.fromkeys(_comment_safe(str(f)) for f in files or project.files))
    return [
        f"{HEADER_LEAD}{sources}",
        f"(compose project {project.name!r}, {what}).",
        "Change the compose file and import it again instead of editing this file.",
    ]


def _comment_safe(text: str) -> str:
    return visible(repr(text)) if not text.isprintable() or "\\" in text else text


@dataclass
class Plan:
    """Facts about every service that other services' conversion needs."""

    project: Project
    target: PodmanVersion
    container_names: dict[str, str]
    needs_healthy: set[str] = field(default_factory=set)  # depended on with service_healthy
    needs_oneshot: set[str] = field(default_factory=set)  # service_completed_successfully
    network_units: dict[str, str] = field(default_factory=dict)  # compose net -> Network= ref
    volume_units: dict[str, str] = field(default_factory=dict)  # compose vol -> Volume= ref
    # env and label files parsed once per project: (kind, path) -> (values, podman reads same)
    parsed_files: dict[tuple[str, str], tuple[dict[str, str], bool]] = field(default_factory=dict)
    # Services the project depends on but does not define (stack mode): their unit
    # (`postgres` -> `postgres.service`, the managed stack's).
    external: dict[str, str] = field(default_factory=dict)
    chars_written: int = 0  # values of all units so far, against MAX_UNIT_CHARS
    values_written: int = 0  # against MAX_UNIT_VALUES

    def unit_stem(self, service: str) -> str:
        """A service's unit name, `<project>-<service>`: two projects' `db` services land
        in one /etc/containers/systemd without replacing each other, and a dependency
        names its own project's unit."""
        return f"{self.project.name}-{service}"


def _flag_handler(flag: str, key: str) -> Callable[[ServiceConverter, Any], None]:
    """A handler that passes the compose value to one `podman run` flag."""

    def handler(self: ServiceConverter, value: Any) -> None:
        self.flag(flag, scalar(value), key)

    return handler


class ServiceConverter:
    """Converts one service; findings go to the shared report under the service's name."""

    def __init__(self, plan: Plan, name: str, report: Report) -> None:
        self.plan = plan
        self.project = plan.project
        self.target = plan.target
        self.name = name
        self.svc: dict[str, Any] = plan.project.services[name]
        self.report = report
        self.unit = UnitFile(f"{plan.unit_stem(name)}.container")
        self.podman_args: list[str] = []
        self.service_lines: list[tuple[str, str | list[str]]] = []
        self.unit_lines: list[tuple[str, str | list[str]]] = []
        self.requires: list[str] = []
        self.wants: list[str] = []
        self.after: list[str] = []
        self.wanted_by = False
        self.done: set[str] = set()
        self.extra_units: list[UnitFile] = []  # the service's .build unit
        self.refused = False  # no unit can be written for it (a build without .build)

    # --- emitting ---------------------------------------------------------------------

    def lose(self, key: str, why: str) -> None:
        self.report.lose(self.name, key, why)

    def note(self, key: str, why: str) -> None:
        self.report.note(self.name, key, why)

    def put(self, key: str, value: str | Sequence[str], compose_key: str) -> bool:
        """Write `key=value` in [Container] if the target accepts the key."""
        if not supports(C, key, self.target):
            self.lose(
                compose_key,
                f"needs {key}= (Podman {first_version(C, key)}); the "
                f"target is Podman {self.target}",
            )
            return False
        try:
            self.unit.add(C, key, value)
        except UnitValueError as exc:
            self.lose(compose_key, f"{key}=: {exc}")
            return False
        self.count([value] if isinstance(value, str) else value)
        return True

    def count(self, words: Sequence[str]) -> None:
        """Charge written values to the project's budget (MAX_UNIT_VALUES, MAX_UNIT_CHARS)."""
        self.plan.values_written += 1
        self.plan.chars_written += sum(len(w) + 1 for w in words)
        if self.plan.values_written > MAX_UNIT_VALUES or self.plan.chars_written > MAX_UNIT_CHARS:
            raise ComposeError(
                self._file(),
                ("services", self.name),
                f"the units would hold more than {MAX_UNIT_VALUES} values or "
                f"{MAX_UNIT_CHARS >> 20} MiB (an env_file or label_file repeated in many "
                "services?); refused",
            )

    def put_or_flag(self, key: str, value: str, flag: str, compose_key: str) -> None:
        """`key=value`, or the equivalent `podman run` flag on an older target."""
        if supports(C, key, self.target):
            self.put(key, value, compose_key)
        else:
            self.flag(flag, value, compose_key)

    def flag(self, flag: str, value: str | None, compose_key: str) -> None:
        """A `podman run` option for PodmanArgs= (checked now, written at the end)."""
        word = flag if value is None else f"{flag}={value}"
        try:
            UnitFile("check.container").add(C, "PodmanArgs", [word])
        except UnitValueError as exc:
            self.lose(compose_key, f"PodmanArgs=: {exc}")
            return
        self.count([word])
        self.podman_args.append(word)

    def depend(self, service: str, *, required: bool = True) -> None:
        unit = self.plan.external.get(service) or f"{self.plan.unit_stem(service)}.service"
        (self.requires if required else self.wants).append(unit)
        self.after.append(unit)

    # --- driver -----------------------------------------------------------------------

    def convert(self) -> UnitFile:
        files = [self.project.origin.get(self.name, self.project.files[0]), *self.project.files[1:]]
        self.unit.header = unit_header(self.project, f"service {self.name!r}", files)
        self.unit.ensure_section("Unit")
        self.unit.add("Unit", "Description", f"{self.name} ({self.project.name} compose project)")
        self.put("ContainerName", self.plan.container_names[self.name], "container_name")
        for key in _ORDER:
            if key in _ALWAYS:
                self.guarded(key, getattr(self, _ALWAYS[key]))
            elif key in self.svc:
                self.done.add(key)
                self.guarded(key, getattr(self, f"k_{key}"), self.svc[key])
        if self.name in self.plan.needs_healthy:
            self.guarded("healthcheck", self.notify_healthy)
        for key in sorted(self.svc):
            if key in self.done or key.startswith("x-") or key in _HANDLED_ELSEWHERE:
                continue
            if key in _LOSSY:
                self.lose(key, _LOSSY[key])
            else:  # a spec key without a handler: never drop it silently
                self.lose(key, "not supported by aistack import-compose")
        self.finish()
        return self.unit

    def guarded(self, key: str, handler: Callable[..., None], *args: Any) -> None:
        """Run one key's handler; a value of the wrong shape that the per-key checks did
        not catch is a ComposeError naming the key (ArithmeticError: `.inf` or 1e999
        where a size is expected), never a traceback."""
        try:
            handler(*args)
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            raise ComposeError(
                self._file(), ("services", self.name, key), f"invalid value: {exc}"
            ) from None

    def finish(self) -> None:
        for word in self.podman_args:
            self.unit.add(C, "PodmanArgs", [word])
        for key, units in (
            ("Requires", self.requires),
            ("Wants", self.wants),
            ("After", self.after),
        ):
            if units:
                self.unit.add("Unit", key, list(dict.fromkeys(units)))
        for key, value in self.unit_lines:
            self.unit.add("Unit", key, value)
        oneshot = self.name in self.plan.needs_oneshot
        if oneshot:
            self.unit.add("Service", "Type", "oneshot")
            self.unit.add("Service", "RemainAfterExit", "yes")
        else:
            timeout = max(START_TIMEOUT_S, self.health_window() + 60)
            self.unit.add("Service", "TimeoutStartSec", str(timeout))
        for key, value in self.service_lines:
            self.unit.add("Service", key, value)
        if self.wanted_by:
            self.unit.add("Install", "WantedBy", "default.target")

    # --- identity and process ---------------------------------------------------------

    def k_image(self, value: Any) -> None:
        try:  # with a build, the image is the local one the build tags
            local = "build" in self.svc
            ref = (local_image if local else qualify_image)(scalar(value))
            self.put("Image", ref, "image")
        except ValueError as exc:
            raise ComposeError(self._file(), ("services", self.name, "image"), str(exc)) from None

    def k_build(self, value: Any) -> None:
        """A `.build` unit (Podman >= 5.2) builds the image before the container starts
        (`Image=<unit>.build`); before that, a build-only service is refused by name: a
        container unit without an image is one the generator rejects."""
        if not supports("Build", "ImageTag", self.target):
            todo = (
                f"needs a .build unit (Podman {first_version('Build', 'ImageTag')}), the "
                f"target is Podman {self.target}: build it first (podman build -t TAG "
                "CONTEXT) and name TAG in 'image:'"
            )
            if "image" in self.svc:
                self.lose("build", f"not built: {todo}; the unit runs 'image' as it is")
            else:
                self.refused = True
                self.lose("build", f"the service has no image without its build, so no unit "
                          f"is written for it: {todo}")  # fmt: skip
            return
        stem = self.plan.unit_stem(self.name)
        tag = local_image(scalar(self.svc["image"])) if "image" in self.svc else (
            f"localhost/{stem}:latest")  # fmt: skip
        unit = UnitFile(f"{stem}.build", unit_header(self.project, f"build of {self.name!r}"))
        unit.add("Unit", "Description", f"image of {self.name} ({self.project.name} compose "
                 "project)")  # fmt: skip
        unit.add("Build", "ImageTag", tag)
        context = str(value.get("context", "."))
        unit.add("Build", "SetWorkingDirectory", context)
        local = "://" not in context and not context.startswith("git@")
        dockerfile = value.get("dockerfile")
        if dockerfile:
            file = str(dockerfile)
            if local and not os.path.isabs(file) and "://" not in file:
                file = os.path.normpath(os.path.join(context, file))
            unit.add("Build", "File", file)
        if value.get("target"):
            unit.add("Build", "Target", scalar(value["target"]))
        args = value.get("args") or {}
        pairs = args.items() if isinstance(args, dict) else (
            str(a).partition("=")[::2] for a in args)  # fmt: skip
        for key, arg in pairs:
            if arg is None:
                continue  # unset: Compose passes nothing
            if supports("Build", "BuildArg", self.target):
                unit.add("Build", "BuildArg", f"{key}={scalar(arg)}")
            else:
                unit.add("Build", "PodmanArgs", [f"--build-arg={key}={scalar(arg)}"])
        for key, label in sorted((value.get("labels") or {}).items()):
            unit.add("Build", "Label", f"{key}={scalar(label)}")
        if value.get("network"):
            unit.add("Build", "Network", scalar(value["network"]))
        for key in sorted(set(value) - {"context", "dockerfile", "target", "args", "labels",
                                        "network"}):  # fmt: skip
            self.lose(f"build.{key}", "not converted into the .build unit")
        self.unit.replace(C, "Image", [unit.name])
        self.extra_units.append(unit)

    def k_container_name(self, value: Any) -> None:
        pass  # written first, from the plan (other services refer to it)

    def k_entrypoint(self, value: Any) -> None:
        if value is None:
            return
        words = self._words(value, "entrypoint")
        if words is None:
            return
        if not words:
            self.lose("entrypoint", "an empty entrypoint (reset) cannot be written for quadlet")
            return
        text = words[0] if len(words) == 1 else json.dumps(words, separators=(",", ":"))
        self.put_or_flag("Entrypoint", text, "--entrypoint", "entrypoint")

    def k_command(self, value: Any) -> None:
        if value is None:
            return
        words = self._words(value, "command")
        if words is None:
            return
        if not words:
            self.lose("command", "an empty command cannot be written for quadlet")
            return
        self.put("Exec", words, "command")

    def _words(self, value: Any, key: str) -> list[str] | None:
        try:
            return command_words(value)
        except ValueError as exc:
            raise ComposeError(self._file(), ("services", self.name, key), str(exc)) from None

    def k_user(self, value: Any) -> None:
        user, _, group = scalar(value).partition(":")
        self.put("User", user, "user")
        if group:
            self.put("Group", group, "user")

    def k_working_dir(self, value: Any) -> None:
        self.put_or_flag("WorkingDir", scalar(value), "--workdir", "working_dir")

    def k_hostname(self, value: Any) -> None:
        self.put_or_flag("HostName", scalar(value), "--hostname", "hostname")

    def k_init(self, value: Any) -> None:
        if value:
            self.put("RunInit", "true", "init")

    def k_read_only(self, value: Any) -> None:
        if value:
            self.put("ReadOnly", "true", "read_only")

    def k_privileged(self, value: Any) -> None:
        if value:
            self.flag("--privileged", None, "privileged")

    def k_tty(self, value: Any) -> None:
        if value:
            self.flag("--tty", None, "tty")

    def k_stdin_open(self, value: Any) -> None:
        if value:
            self.flag("--interactive", None, "stdin_open")

    def k_stop_signal(self, value: Any) -> None:
        self.put_or_flag("StopSignal", scalar(value), "--stop-signal", "stop_signal")

    def k_stop_grace_period(self, value: Any) -> None:
        seconds = whole_seconds(self._duration(value, "stop_grace_period"))
        self.put_or_flag("StopTimeout", str(seconds), "--stop-timeout", "stop_grace_period")
        if seconds + 10 > SYSTEMD_STOP_TIMEOUT_S:
            self.service_lines.append(("TimeoutStopSec", str(seconds + 30)))

    def _duration(self, value: Any, key: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ComposeError(
                self._file(), ("services", self.name, *key.split(".")), str(exc)
            ) from None

    def _bytes(self, value: Any, key: str) -> str:
        try:
            return podman_size(parse_bytes(value))
        except ValueError as exc:
            raise ComposeError(
                self._file(), ("services", self.name, *key.split(".")), str(exc)
            ) from None

    def _file(self) -> Path:
        return self.project.origin.get(self.name, self.project.files[0])

    # --- environment and labels -------------------------------------------------------

    def env_files(self, value: Any) -> dict[str, str]:
        """`EnvironmentFile=` for files Podman reads as Compose does; otherwise the
        values of every file, to be written inline (so their precedence is kept)."""
        inline: dict[str, str] = {}
        plain: list[str] = []
        needs_inline = False
        for i, entry in enumerate(value):
            path = Path(entry["path"])
            if not os.path.exists(path):
                if entry.get("required", True):
                    raise ComposeError(
                        self._file(),
                        ("services", self.name, "env_file", i),
                        f"env file {path} not found (mark it 'required: false' if it is optional)",
                    )
                self.note(f"env_file[{i}]", f"{path} does not exist (required: false); skipped")
                continue
            raw = entry.get("format") == "raw"
            values, same = self.read_env_file(path, raw, ("services", self.name, "env_file", i))
            inline.update(values)
            plain.append(str(path))
            if not (raw or same):
                needs_inline = True
                self.note(
                    f"env_file[{i}]",
                    f"{path} uses quotes, variables or comments that "
                    "Podman's --env-file reads differently; its values were written "
                    "into the unit (re-import after changing it)",
                )
        if needs_inline:
            return inline
        for path_text in plain:
            self.put("EnvironmentFile", [path_text], "env_file")
        return {}

    def read_env_file(
        self, path: Path, raw: bool, where: tuple[str | int, ...], *, labels: bool = False
    ) -> tuple[dict[str, str], bool]:
        """An env (or label) file's values and whether Podman reads it as Compose does,
        parsed once per project; a file that cannot be read names the service's key."""
        kind = "label" if labels else ("raw" if raw else "env")
        key = (kind, os.path.abspath(path))
        if key not in self.plan.parsed_files:
            try:
                text = self.project.reader.text(path)
                lookup = (lambda _: None) if labels else self.project.environment.get
                values = dotenv.parse(text, path, lookup, raw=raw)
            except ComposeError as exc:
                if exc.path == "(file)":  # unreadable: say which key named it
                    raise ComposeError(self._file(), where, f"{path}: {exc.message}") from None
                raise
            self.plan.parsed_files[key] = (values, raw or dotenv.podman_reads_same(text))
        values, same = self.plan.parsed_files[key]
        return dict(values), same

    def environment(self) -> None:
        """env_file, then environment over it (Compose's precedence, and Podman's)."""
        self.done.update({"env_file", "environment"})
        env = self.env_files(self.svc.get("env_file") or [])
        for key, val in (self.svc.get("environment") or {}).items():
            if val is None:
                found = self.project.environment.get(key)
                if found is None:
                    env.pop(key, None)
                    self.note(
                        f"environment.{key}",
                        "not set when importing, so not set in the container (as Compose does)",
                    )
                    continue
                self.note(f"environment.{key}", "value taken from the environment when importing")
                val = found
            env[key] = val
        for key in sorted(env):
            self.put("Environment", [f"{key}={env[key]}"], f"environment.{key}")

    def labels(self) -> None:
        """label_file, then labels over it."""
        self.done.update({"labels", "label_file"})
        labels: dict[str, str] = {}
        for i, path in enumerate(self.svc.get("label_file") or []):
            where = ("services", self.name, "label_file", i)
            if not os.path.exists(path):
                raise ComposeError(self._file(), where, f"label file {path} not found")
            labels.update(self.read_env_file(Path(path), False, where, labels=True)[0])
        labels.update({k: v or "" for k, v in (self.svc.get("labels") or {}).items()})
        for key in sorted(labels):
            self.put("Label", [f"{key}={labels[key]}"], f"labels.{key}")

    def k_annotations(self, value: Any) -> None:
        for key in sorted(value or {}):
            self.put("Annotation", [f"{key}={value[key] or ''}"], f"annotations.{key}")

    # --- storage ----------------------------------------------------------------------

    def k_volumes(self, value: Any) -> None:
        for i, vol in enumerate(value):
            key = f"volumes[{i}]"
            kind = vol.get("type")
            target = vol["target"]
            options: list[str] = []
            if vol.get("read_only"):
                options.append("ro")
            bind = vol.get("bind") or {}
            if bind.get("selinux"):
                options.append(bind["selinux"])
            if bind.get("propagation"):
                options.append(bind["propagation"])
            if vol.get("consistency"):
                self.note(f"{key}.consistency", "only meaningful on Docker Desktop for Mac")
            if kind == "bind":
                source = vol["source"]
                if not os.path.exists(source):
                    self.report.act(
                        f"create {source} (a missing bind-mount source is an error "
                        "for Podman; Docker creates it as a directory)"
                    )
                if (vol.get("volume") or {}).get("subpath"):
                    self.lose(f"{key}.volume.subpath", "only applies to named volumes")
                self._volume(f"{source}:{target}", options, key)
            elif kind == "volume":
                volume = vol.get("volume") or {}
                if volume.get("nocopy"):
                    options.append("nocopy")
                if volume.get("subpath"):
                    self.lose(
                        f"{key}.volume.subpath",
                        "mounting part of a volume has no quadlet Volume= equivalent",
                    )
                    continue
                source = vol.get("source")
                if not source:
                    self.note(
                        key,
                        "anonymous volume: quadlet removes the container with its "
                        "anonymous volumes at every stop (Compose keeps them); use a "
                        "named volume for data that must survive a restart",
                    )
                    self._volume(target, options, key)
                else:
                    self._volume(f"{self.plan.volume_units[source]}:{target}", options, key)
            elif kind == "tmpfs":
                tmpfs = vol.get("tmpfs") or {}
                opts = []
                if "size" in tmpfs:
                    opts.append(f"size={self._bytes(tmpfs['size'], key + '.tmpfs.size')}")
                if "mode" in tmpfs:
                    mode = tmpfs["mode"]
                    opts.append(f"mode={mode:o}" if isinstance(mode, int) else f"mode={mode}")
                self._tmpfs(target + (":" + ",".join(opts) if opts else ""), key)
            else:
                self.lose(key, f"volume type {kind!r} has no Podman equivalent")

    def _volume(self, spec: str, options: list[str], key: str) -> None:
        self.put("Volume", spec + (":" + ",".join(options) if options else ""), key)

    def _tmpfs(self, spec: str, key: str) -> None:
        self.put_or_flag("Tmpfs", spec, "--tmpfs", key)

    def k_tmpfs(self, value: Any) -> None:
        for i, spec in enumerate(value):
            self._tmpfs(spec, f"tmpfs[{i}]")

    def k_volumes_from(self, value: Any) -> None:
        for i, spec in enumerate(value):
            source, _, mode = spec.partition(":")
            if source == "container":
                source, _, mode = mode.partition(":")
                name = source
            elif source in self.project.services:
                name = self.plan.container_names[source]
                self.depend(source)
            else:
                raise ComposeError(
                    self._file(),
                    ("services", self.name, "volumes_from", i),
                    f"refers to undefined service {source!r}",
                )
            self.flag("--volumes-from", name + (f":{mode}" if mode else ""), f"volumes_from[{i}]")

    def k_shm_size(self, value: Any) -> None:
        self.put_or_flag("ShmSize", self._bytes(value, "shm_size"), "--shm-size", "shm_size")

    # --- network ----------------------------------------------------------------------

    def k_networks_and_mode(self) -> None:
        self.done.update({"networks", "network_mode"})
        mode = self.svc.get("network_mode")
        if mode is not None:
            if self.svc.get("networks"):
                raise ComposeError(
                    self._file(),
                    ("services", self.name, "network_mode"),
                    "'network_mode' and 'networks' cannot be combined",
                )
            self.k_network_mode(scalar(mode))
            return
        networks = self.svc.get("networks") or {"default": None}
        container = self.plan.container_names[self.name]
        for net in sorted(networks):
            spec = networks[net] or {}
            aliases = [] if self.name == container else [self.name]
            aliases += [scalar(a) for a in spec.get("aliases") or []]
            opts = [f"alias={a}" for a in dict.fromkeys(aliases)]
            for compose_key, podman_key in (
                ("ipv4_address", "ip"),
                ("ipv6_address", "ip6"),
                ("mac_address", "mac"),
                ("interface_name", "interface_name"),
            ):
                if spec.get(compose_key):
                    opts.append(f"{podman_key}={spec[compose_key]}")
            for lossy_key in ("link_local_ips", "priority", "gw_priority", "driver_opts"):
                if spec.get(lossy_key) is not None:
                    self.lose(
                        f"networks.{net}.{lossy_key}",
                        "no Podman equivalent for a container's network attachment",
                    )
            ref = self.plan.network_units[net]
            self.put("Network", ref + (":" + ",".join(opts) if opts else ""), f"networks.{net}")

    def k_network_mode(self, mode: str) -> None:
        if mode in ("host", "none", "bridge"):
            self.put("Network", mode if mode != "bridge" else "bridge", "network_mode")
            if mode == "host" and self.svc.get("ports"):
                self.note(
                    "ports",
                    "ignored by Docker with network_mode: host; Podman also "
                    "publishes nothing in the host network",
                )
        elif mode.startswith("service:"):
            other = mode[8:]
            self.put("Network", f"container:{self.plan.container_names[other]}", "network_mode")
            self.depend(other)
        elif mode.startswith("container:"):
            self.put("Network", mode, "network_mode")
        else:
            self.put("Network", mode, "network_mode")

    def k_ports(self, value: Any) -> None:
        if self.svc.get("network_mode") == "host":
            return
        for i, port in enumerate(value):
            key = f"ports[{i}]"
            target, published = port["target"], port.get("published")
            if published and "-" in published and "-" not in target:
                self.lose(
                    key,
                    "a host port range for one container port (Docker picks a "
                    "free one) has no Podman equivalent",
                )
                continue
            if published and "-" in target and port_count(published) != port_count(target):
                self.lose(key, "host and container port ranges differ in length")
                continue
            host_ip = port.get("host_ip")
            spec = target
            if published or host_ip:
                spec = f"{published or ''}:{spec}"
            if host_ip:
                spec = (f"[{host_ip}]" if ":" in host_ip else host_ip) + ":" + spec
            protocol = port.get("protocol", "tcp")
            if protocol != "tcp":
                spec += f"/{protocol}"
            self.put("PublishPort", spec, key)
            if port.get("mode") == "host":
                self.note(f"{key}.mode", _SWARM_ONLY)
            for meta in ("name", "app_protocol"):
                if port.get(meta):
                    self.note(f"{key}.{meta}", "descriptive only; not used by Podman")

    def k_expose(self, value: Any) -> None:
        for i, port in enumerate(value):
            if not re.fullmatch(r"\d+(-\d+)?(/udp|/tcp)?", port):
                self.lose(f"expose[{i}]", f"{port!r}: quadlet only exposes tcp/udp ports")
                continue
            self.put("ExposeHostPort", port, f"expose[{i}]")

    def k_extra_hosts(self, value: Any) -> None:
        for i, entry in enumerate(value):
            host, _, ip = entry.partition("=")
            key = f"extra_hosts[{i}]"
            if ip == "host-gateway" and self.target < HOST_GATEWAY_SINCE:
                if host in ("host.docker.internal", "host.containers.internal"):
                    self.note(key, f"Podman already maps {host} to the host")
                else:
                    self.lose(
                        key,
                        f"host-gateway needs Podman {HOST_GATEWAY_SINCE}; use "
                        "host.containers.internal instead",
                    )
                continue
            self.put_or_flag("AddHost", f"{host}:{ip}", "--add-host", key)

    def k_dns(self, value: Any) -> None:
        for v in value:
            self.put_or_flag("DNS", v, "--dns", "dns")

    def k_dns_search(self, value: Any) -> None:
        for v in value:
            self.put_or_flag("DNSSearch", v, "--dns-search", "dns_search")

    def k_dns_opt(self, value: Any) -> None:
        for v in value:
            self.put_or_flag("DNSOption", v, "--dns-option", "dns_opt")

    def k_links(self, value: Any) -> None:
        for i, link in enumerate(value):
            service, _, alias = link.partition(":")
            if service not in self.project.services:
                raise ComposeError(
                    self._file(),
                    ("services", self.name, "links", i),
                    f"refers to undefined service {service!r}",
                )
            if alias and alias != service:
                self.lose(
                    f"links[{i}]",
                    f"the link alias {alias!r} has no Podman equivalent "
                    f"(add it to {service}'s network aliases)",
                )
            else:
                self.note(f"links[{i}]", "not needed: service names resolve on the project network")
            if "depends_on" not in self.svc:
                self.depend(service)

    def k_mac_address(self, value: Any) -> None:
        self.flag("--mac-address", scalar(value), "mac_address")

    # --- resources --------------------------------------------------------------------

    def k_mem_limit(self, value: Any) -> None:
        self.put_or_flag("Memory", self._bytes(value, "mem_limit"), "--memory", "mem_limit")

    def k_mem_reservation(self, value: Any) -> None:
        self.flag("--memory-reservation", self._bytes(value, "mem_reservation"), "mem_reservation")

    def k_memswap_limit(self, value: Any) -> None:
        text = "-1" if str(value) == "-1" else self._bytes(value, "memswap_limit")
        self.flag("--memory-swap", text, "memswap_limit")

    def k_mem_swappiness(self, value: Any) -> None:
        self.flag("--memory-swappiness", scalar(value), "mem_swappiness")

    def k_pids_limit(self, value: Any) -> None:
        self.put_or_flag("PidsLimit", scalar(value), "--pids-limit", "pids_limit")

    k_cpus = _flag_handler("--cpus", "cpus")
    k_cpu_shares = _flag_handler("--cpu-shares", "cpu_shares")
    k_cpu_quota = _flag_handler("--cpu-quota", "cpu_quota")
    k_cpu_period = _flag_handler("--cpu-period", "cpu_period")
    k_cpuset = _flag_handler("--cpuset-cpus", "cpuset")
    k_cpu_rt_runtime = _flag_handler("--cpu-rt-runtime", "cpu_rt_runtime")
    k_cpu_rt_period = _flag_handler("--cpu-rt-period", "cpu_rt_period")
    k_oom_score_adj = _flag_handler("--oom-score-adj", "oom_score_adj")
    k_runtime = _flag_handler("--runtime", "runtime")
    k_platform = _flag_handler("--platform", "platform")
    k_cgroup_parent = _flag_handler("--cgroup-parent", "cgroup_parent")

    def k_oom_kill_disable(self, value: Any) -> None:
        if value:
            self.flag("--oom-kill-disable", None, "oom_kill_disable")

    def k_cgroup(self, value: Any) -> None:
        self.flag("--cgroupns", scalar(value), "cgroup")

    def _namespace(self, key: str, flag: str, value: Any) -> None:
        mode = scalar(value)
        if mode.startswith("service:"):
            other = mode[8:]
            if other not in self.project.services:
                raise ComposeError(
                    self._file(),
                    ("services", self.name, key),
                    f"refers to undefined service {other!r}",
                )
            mode = f"container:{self.plan.container_names[other]}"
            self.depend(other)
        self.flag(flag, mode, key)

    def k_pid(self, value: Any) -> None:
        self._namespace("pid", "--pid", value)

    def k_ipc(self, value: Any) -> None:
        self._namespace("ipc", "--ipc", value)

    def k_uts(self, value: Any) -> None:
        self.flag("--uts", scalar(value), "uts")

    def k_userns_mode(self, value: Any) -> None:
        self.put_or_flag("UserNS", scalar(value), "--userns", "userns_mode")

    def k_ulimits(self, value: Any) -> None:
        for name in sorted(value):
            limit = value[name]
            if isinstance(limit, dict):
                text = f"{name}={scalar(limit.get('soft'))}:{scalar(limit.get('hard'))}"
            else:
                text = f"{name}={scalar(limit)}"
            self.put_or_flag("Ulimit", text, "--ulimit", f"ulimits.{name}")

    def k_sysctls(self, value: Any) -> None:
        for name in sorted(value):
            text = f"{name}={value[name]}"
            if supports(C, "Sysctl", self.target):
                self.put("Sysctl", [text], f"sysctls.{name}")
            else:
                self.flag("--sysctl", text, f"sysctls.{name}")

    def k_devices(self, value: Any) -> None:
        for i, device in enumerate(value):
            self.put("AddDevice", [device], f"devices[{i}]")

    def k_device_cgroup_rules(self, value: Any) -> None:
        for i, rule in enumerate(value):
            self.flag("--device-cgroup-rule", rule, f"device_cgroup_rules[{i}]")

    def k_storage_opt(self, value: Any) -> None:
        for name in sorted(value or {}):
            self.flag("--storage-opt", f"{name}={scalar(value[name])}", f"storage_opt.{name}")

    def k_group_add(self, value: Any) -> None:
        for v in value:
            self.put_or_flag("GroupAdd", v, "--group-add", "group_add")

    def k_cap_add(self, value: Any) -> None:
        self.put("AddCapability", value, "cap_add")

    def k_cap_drop(self, value: Any) -> None:
        self.put("DropCapability", value, "cap_drop")

    def k_security_opt(self, value: Any) -> None:
        for i, opt in enumerate(value):
            key = f"security_opt[{i}]"
            name, sep, arg = _split_opt(opt)
            if name == "no-new-privileges" and arg in ("", "true"):
                self.put("NoNewPrivileges", "true", key)
            elif name == "no-new-privileges" and arg == "false":
                continue
            elif name == "label" and arg == "disable":
                self.put("SecurityLabelDisable", "true", key)
            elif name == "seccomp":
                self.put("SeccompProfile", arg, key)
            else:
                self.flag("--security-opt", f"{name}={arg}" if sep else name, key)

    def k_deploy(self, value: Any) -> None:
        replicas = value.get("replicas")
        if replicas is not None and int(replicas) != 1:
            self.lose("deploy.replicas", "quadlet runs exactly one container per unit")
        resources = value.get("resources") or {}
        limits = resources.get("limits") or {}
        if "memory" in limits:
            self.put_or_flag(
                "Memory",
                self._bytes(limits["memory"], "deploy.resources.limits.memory"),
                "--memory",
                "deploy.resources.limits.memory",
            )
        if "cpus" in limits:
            self.flag("--cpus", scalar(limits["cpus"]), "deploy.resources.limits.cpus")
        if "pids" in limits:
            self.put_or_flag(
                "PidsLimit", scalar(limits["pids"]), "--pids-limit", "deploy.resources.limits.pids"
            )
        for extra in sorted(set(limits) - {"memory", "cpus", "pids"}):
            self.lose(f"deploy.resources.limits.{extra}", "no Podman equivalent")
        reservations = resources.get("reservations") or {}
        if "memory" in reservations:
            self.flag(
                "--memory-reservation",
                self._bytes(reservations["memory"], "deploy.resources.reservations.memory"),
                "deploy.resources.reservations.memory",
            )
        if "cpus" in reservations:
            self.lose("deploy.resources.reservations.cpus", "Podman cannot reserve CPUs")
        for i, device in enumerate(reservations.get("devices") or []):
            self.gpu(device, f"deploy.resources.reservations.devices[{i}]")
        for extra in sorted(set(reservations) - {"memory", "cpus", "devices"}):
            self.lose(f"deploy.resources.reservations.{extra}", "no Podman equivalent")
        if "restart_policy" in value and "restart" not in self.svc:
            self.restart_policy(value["restart_policy"])
        for key in (
            "mode",
            "labels",
            "placement",
            "update_config",
            "rollback_config",
            "endpoint_mode",
        ):
            if key in value and not (key == "mode" and value[key] == "replicated"):
                self.note(f"deploy.{key}", _SWARM_ONLY)
        for key in sorted(
            set(value)
            - {
                "replicas",
                "resources",
                "restart_policy",
                "mode",
                "labels",
                "placement",
                "update_config",
                "rollback_config",
                "endpoint_mode",
            }
        ):
            self.lose(f"deploy.{key}", "not supported")

    def k_gpus(self, value: Any) -> None:
        if value == "all":
            self.gpu({"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}, "gpus")
            return
        for i, device in enumerate(value if isinstance(value, list) else [value]):
            self.gpu({"capabilities": ["gpu"], **device}, f"gpus[{i}]")

    def gpu(self, device: dict[str, Any], key: str) -> None:
        """A GPU reservation -> CDI devices (`AddDevice=nvidia.com/gpu=...`).

        Docker asks the NVIDIA runtime for the GPUs; Podman injects them through CDI,
        from the spec `nvidia-ctk cdi generate` writes.
        """
        caps = device.get("capabilities") or []
        flat = {c for group in caps for c in (group if isinstance(group, list) else [group])}
        driver = device.get("driver", "nvidia" if "gpu" in flat else None)
        if driver == "cdi":
            for dev in device.get("device_ids") or []:
                self.put("AddDevice", [str(dev)], key)
            return
        if driver != "nvidia" or "gpu" not in flat:
            self.lose(
                key,
                f"device reservation (driver {driver!r}, capabilities "
                f"{sorted(flat)}) has no CDI equivalent; only NVIDIA GPUs are converted",
            )
            return
        ids = [str(d) for d in device.get("device_ids") or []]
        count = device.get("count")
        if ids and count is not None:
            raise ComposeError(
                self._file(),
                ("services", self.name, *key.split(".")),
                "'count' and 'device_ids' cannot be combined",
            )
        if not ids:
            if count in (None, "all", -1):
                ids = ["all"]
            else:
                if int(count) > MAX_GPUS:
                    raise ComposeError(
                        self._file(),
                        ("services", self.name, *key.split("."), "count"),
                        f"count {int(count)}: more than {MAX_GPUS} GPUs; use 'all'",
                    )
                ids = [str(n) for n in range(int(count))]
                self.note(
                    key,
                    f"count {count}: GPUs 0..{int(count) - 1} by index (Docker "
                    "picks any free ones)",
                )
        for gpu in ids:
            self.put("AddDevice", [f"nvidia.com/gpu={gpu}"], key)
        for extra in sorted(set(device) - {"driver", "count", "device_ids", "capabilities"}):
            self.lose(f"{key}.{extra}", "not passed to CDI devices")
        self.report.act(
            "generate the NVIDIA CDI spec once on the host: "
            "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
        )

    # --- lifecycle --------------------------------------------------------------------

    def k_restart(self, value: Any) -> None:
        policy = scalar(value)
        name, _, count = policy.partition(":")
        if name == "no" or policy == "false":
            return
        if name in ("always", "unless-stopped"):
            self.restart("always", None, wanted=True)
        elif name == "on-failure":
            self.restart("on-failure", int(count) if count else None, wanted=False)
        else:
            raise ComposeError(
                self._file(),
                ("services", self.name, "restart"),
                f"unknown restart policy {policy!r}; expected no, always, "
                "on-failure[:N] or unless-stopped",
            )

    def restart_policy(self, policy: dict[str, Any]) -> None:
        condition = policy.get("condition", "any")
        mapping = {"any": "always", "on-failure": "on-failure", "none": None}
        if condition not in mapping:
            raise ComposeError(
                self._file(),
                ("services", self.name, "deploy", "restart_policy", "condition"),
                f"unknown condition {condition!r}",
            )
        restart = mapping[condition]
        attempts = policy.get("max_attempts")
        if restart:
            delay = policy.get("delay")
            self.restart(
                restart,
                int(attempts) if attempts else None,
                wanted=restart == "always",
                delay=f"{whole_seconds(self._duration(delay, 'deploy.restart_policy.delay'))}s"
                if delay is not None
                else None,
            )
        if "window" in policy:
            self.lose("deploy.restart_policy.window", "systemd has no restart success window")

    def restart(
        self, policy: str, attempts: int | None, *, wanted: bool, delay: str | None = None
    ) -> None:
        if self.name in self.plan.needs_oneshot and policy == "always":
            self.lose(
                "restart",
                "a service others wait on to complete "
                "(service_completed_successfully) cannot restart always; it is run once",
            )
            return
        self.service_lines.append(("Restart", policy))
        self.service_lines.append(("RestartSec", delay or RESTART_DELAY))
        if attempts is not None:
            self.unit_lines.append(("StartLimitIntervalSec", "infinity"))
            self.unit_lines.append(("StartLimitBurst", str(attempts + 1)))
        self.wanted_by = wanted

    def k_depends_on(self, value: Any) -> None:
        for dep in sorted(value):
            spec = value[dep]
            self.depend(dep, required=bool(spec.get("required", True)))
            if spec.get("restart"):
                self.note(
                    f"depends_on.{dep}.restart",
                    f"Requires= already restarts this unit when {dep} is restarted with systemctl",
                )
            if spec["condition"] == "service_healthy" and self.target < NOTIFY_HEALTHY_SINCE:
                self.lose(
                    f"depends_on.{dep}",
                    f"service_healthy needs Notify=healthy (Podman "
                    f"{NOTIFY_HEALTHY_SINCE}); this unit would start once {dep} runs",
                )

    def k_healthcheck(self, value: Any) -> None:
        if value.get("disable") or _is_none_test(value.get("test")):
            self.put_or_flag("HealthCmd", "none", "--health-cmd", "healthcheck")
            return
        if "test" in value:
            cmd = self.health_cmd(value["test"])
            if cmd is not None:
                self.put_or_flag("HealthCmd", cmd, "--health-cmd", "healthcheck.test")
        for key, quadlet, flag in (
            ("interval", "HealthInterval", "--health-interval"),
            ("timeout", "HealthTimeout", "--health-timeout"),
            ("start_period", "HealthStartPeriod", "--health-start-period"),
        ):
            if key in value:
                text = go_duration(self._duration(value[key], f"healthcheck.{key}"))
                self.put_or_flag(quadlet, text, flag, f"healthcheck.{key}")
        if "retries" in value:
            self.put_or_flag(
                "HealthRetries", scalar(value["retries"]), "--health-retries", "healthcheck.retries"
            )
        if "start_interval" in value:
            self.lose(
                "healthcheck.start_interval",
                "Podman has no faster check interval during the start period",
            )

    def health_cmd(self, test: Any) -> str | None:
        """The healthcheck test as Podman's --health-cmd reads it.

        Podman takes a JSON array as an exec-form command (its first element is the
        program, no "CMD" marker) and any other string as a shell command. A shell
        command that Podman or quadlet would misread (a line break, a leading `[` or
        `CMD`, a double quote at either end, which quadlet strips) is passed as the
        exec form `["/bin/sh", "-c", command]` instead, which means the same.
        """
        if isinstance(test, str):
            shell = test
        elif isinstance(test, list) and test:
            kind, args = str(test[0]).upper(), [scalar(a) for a in test[1:]]
            if kind == "CMD" and args:
                if len(args) == 1:
                    self.note(
                        "healthcheck.test", "a one-word CMD runs through /bin/sh -c in Podman"
                    )
                    return args[0]
                return json.dumps(args, separators=(",", ":"))
            if kind == "CMD-SHELL" and args:
                shell = " ".join(args)
                if len(args) > 1:
                    self.note(
                        "healthcheck.test",
                        f"CMD-SHELL with {len(args)} arguments: joined with spaces into one "
                        "shell command, as Docker does",
                    )
            else:
                raise ComposeError(
                    self._file(),
                    ("services", self.name, "healthcheck", "test"),
                    'expected ["CMD", ...], ["CMD-SHELL", "..."], ["NONE"] or a string',
                )
        else:
            raise ComposeError(
                self._file(),
                ("services", self.name, "healthcheck", "test"),
                "expected a string or a list",
            )
        shell = shell.strip()
        first = shell.split(" ", 1)[0].upper()
        if (
            "\n" in shell
            or shell.startswith(("[", '"'))
            or shell.endswith('"')
            or first in ("CMD", "CMD-SHELL", "NONE")
        ):
            return json.dumps(["/bin/sh", "-c", shell], separators=(",", ":"))
        return shell

    def health_window(self) -> int:
        """Seconds a container may take to become healthy (for TimeoutStartSec=)."""
        if self.name not in self.plan.needs_healthy:
            return 0
        hc = self.svc.get("healthcheck") or {}
        try:
            interval = parse_duration(hc.get("interval", "30s"))
            timeout = parse_duration(hc.get("timeout", "30s"))
            start = parse_duration(hc.get("start_period", 0))
            retries = int(hc.get("retries", 3))
        except ValueError:
            return 0
        return whole_seconds(start + (retries + 1) * (interval + timeout))

    def notify_healthy(self) -> None:
        hc = self.svc.get("healthcheck") or {}
        if hc.get("disable") or _is_none_test(hc.get("test")):
            self.lose(
                "healthcheck",
                "other services wait for this one to be healthy, but its healthcheck is disabled",
            )
            return
        if self.target < NOTIFY_HEALTHY_SINCE:
            return  # reported on the dependent's depends_on
        if not hc.get("test"):
            self.note(
                "healthcheck",
                "other services wait for this one to be healthy; the "
                "image's own HEALTHCHECK is used",
            )
        self.put("Notify", "healthy", "healthcheck")

    def k_logging(self, value: Any) -> None:
        driver = value.get("driver")
        drivers = {
            "json-file": "k8s-file",
            "local": "k8s-file",
            "journald": "journald",
            "none": "none",
            "k8s-file": "k8s-file",
            "passthrough": "passthrough",
        }
        if driver is not None:
            if driver not in drivers:
                self.lose(
                    "logging.driver",
                    f"Podman has no {driver!r} log driver (it has "
                    "journald, k8s-file, none, passthrough)",
                )
                return
            self.put("LogDriver", drivers[driver], "logging.driver")
        for opt in sorted(value.get("options") or {}):
            text = f"{opt}={scalar(value['options'][opt])}"
            key = f"logging.options.{opt}"
            if opt not in ("max-size", "tag", "path"):
                self.lose(key, "not a Podman log option (max-size, tag, path)")
            elif supports(C, "LogOpt", self.target):
                self.put("LogOpt", [text], key)
            else:
                self.flag("--log-opt", text, key)

    def k_pull_policy(self, value: Any) -> None:
        policy = {
            "always": "always",
            "never": "never",
            "missing": "missing",
            "if_not_present": "missing",
        }.get(scalar(value))
        if policy is None:
            self.lose("pull_policy", f"{value!r} has no Podman pull policy equivalent")
            return
        self.put_or_flag("Pull", policy, "--pull", "pull_policy")

    def k_scale(self, value: Any) -> None:
        if int(value) != 1:
            self.lose("scale", "quadlet runs exactly one container per unit")

    # --- secrets and configs ----------------------------------------------------------

    def k_secrets(self, value: Any) -> None:
        for i, ref in enumerate(value):
            key = f"secrets[{i}]"
            source = ref["source"]
            secret = self.project.secrets[source]
            name = self.secret_name(source, secret, key)
            if name is None:
                continue
            opts = [name, "type=mount"]
            target = ref.get("target")
            if target:
                opts.append(f"target={target}")
            else:
                opts.append(f"target=/run/secrets/{source}")
            for field_ in ("uid", "gid"):
                if ref.get(field_) is not None:
                    opts.append(f"{field_}={ref[field_]}")
            if ref.get("mode") is not None:
                mode = ref["mode"]
                opts.append(f"mode=0{mode:o}" if isinstance(mode, int) else f"mode={mode}")
            self.put("Secret", [",".join(opts)], key)

    def secret_name(self, source: str, secret: dict[str, Any], key: str) -> str | None:
        """The Podman secret name; creates it at start for file secrets."""
        default = source if secret.get("external") else f"{self.project.name}_{source}"
        name = str(secret.get("name") or default)  # an external secret is the one named so
        if secret.get("external"):
            self.report.act(
                f"secret {name} is external: it must exist (podman secret create {name} FILE)"
            )
            return name
        if "file" in secret:
            path = secret["file"]
            if any(name in value for _, value in self.service_lines):
                return name  # mounted twice: created once
            if self.target >= SECRET_REPLACE_SINCE:
                self.service_lines.append(
                    ("ExecStartPre", [_PODMAN, "secret", "create", "--replace", name, path])
                )
            else:
                self.service_lines.append(("ExecStartPre", ["-" + _PODMAN, "secret", "rm", name]))
                self.service_lines.append(
                    ("ExecStartPre", [_PODMAN, "secret", "create", name, path])
                )
            if not os.path.isfile(path):
                self.report.act(f"create the secret file {path}")
            return name
        if "environment" in secret:
            var = secret["environment"]
            self.report.act(
                f'create secret {name} once from ${var}: printf %s "${var}" | '
                f"podman secret create {name} -"
            )
            self.note(key, f"secret {name} comes from ${var}; Podman keeps it once created")
            return name
        self.lose(
            key,
            f"secret {source!r} has neither file nor environment (content: and "
            "drivers are not supported)",
        )
        return None

    def k_configs(self, value: Any) -> None:
        for i, ref in enumerate(value):
            key = f"configs[{i}]"
            config = self.project.configs[ref["source"]]
            target = ref.get("target") or f"/{ref['source']}"
            if "file" not in config:
                self.lose(key, "only file-based configs are converted (as read-only bind mounts)")
                continue
            for field_ in ("uid", "gid", "mode"):
                if ref.get(field_) is not None:
                    self.lose(f"{key}.{field_}", "a bind-mounted file keeps its owner and mode")
            self.put("Volume", f"{config['file']}:{target}:ro", key)


def _split_opt(opt: str) -> tuple[str, str, str]:
    match = re.match(r"([^:=]*)([:=]?)(.*)", opt)
    assert match  # every string matches (all three groups may be empty)
    return match.group(1), match.group(2), match.group(3)


def _is_none_test(test: Any) -> bool:
    return isinstance(test, list) and len(test) >= 1 and str(test[0]).upper() == "NONE"


# The order compose keys are converted in (and so their quadlet keys appear).
_ORDER = (
    "container_name",
    "image",
    "build",
    "entrypoint",
    "command",
    "user",
    "working_dir",
    "hostname",
    "environment",
    "labels",
    "annotations",
    "networks",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "volumes_from",
    "configs",
    "secrets",
    "devices",
    "gpus",
    "deploy",
    "healthcheck",
    "depends_on",
    "links",
    "restart",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "mac_address",
    "init",
    "read_only",
    "privileged",
    "tty",
    "stdin_open",
    "cap_add",
    "cap_drop",
    "security_opt",
    "sysctls",
    "ulimits",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "pids_limit",
    "cpus",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset",
    "cpu_rt_runtime",
    "cpu_rt_period",
    "oom_kill_disable",
    "oom_score_adj",
    "device_cgroup_rules",
    "storage_opt",
    "group_add",
    "pid",
    "ipc",
    "uts",
    "userns_mode",
    "cgroup",
    "cgroup_parent",
    "runtime",
    "platform",
    "stop_signal",
    "stop_grace_period",
    "logging",
    "pull_policy",
    "scale",
)

# Keys whose handler runs for every service (they combine several compose keys).
_ALWAYS = {"environment": "environment", "labels": "labels", "networks": "k_networks_and_mode"}

_HANDLED_ELSEWHERE = frozenset({"profiles", "extends", "label_file", "networks", "network_mode"})

_LOSSY = {
    "attach": "log attachment is a `docker compose up` console feature",
    "blkio_config": "block I/O weights and limits are not converted",
    "cpu_count": "Windows containers only",
    "cpu_percent": "Windows containers only",
    "credential_spec": "Windows containers only",
    "develop": "Compose Watch has no systemd equivalent",
    "domainname": "Podman has no --domainname",
    "driver_opts": "per-service network driver options are not supported",
    "external_links": "links to containers outside the project have no Podman equivalent",
    "isolation": "Windows containers only",
    "models": "Docker Model Runner has no Podman equivalent",
    "post_start": "lifecycle hooks have no quadlet equivalent",
    "pre_stop": "lifecycle hooks have no quadlet equivalent",
    "provider": "Compose provider services have no Podman equivalent",
    "use_api_socket": "Docker API socket injection has no Podman equivalent",
}
