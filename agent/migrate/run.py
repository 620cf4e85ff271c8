"""The migration's steps, in order, each recorded in the journal when it is done.

check     refusals before anything changes (checks.py); --dry-run ends here
quiesce   the old stack's writers stop (Open WebUI, LiteLLM, Ollama); PostgreSQL runs on
backup    a safety pg_dump through the old container, verified like every aistack backup
manifest  PostgreSQL's tables: rows and checksums, through the old container
stop      the old PostgreSQL stops; the old containers are renamed (*-pre-aistack), never
          removed; Ollama's and Open WebUI's data are recorded (models, blobs, rows)
adopt     copy mode: the folders are copied into the managed volumes (resumable) and the
          copy is compared with the record; in-place: the units will bind the folders
config    the secrets go to /etc/aistack/secrets (0600), agent.yaml gets the stack: section
          (the file before is kept as agent.yaml.pre-migrate); the agent reloads
up        `aistack up`: the managed units start, in order, until healthy
verify    the data again, through the new stack: same tables and rows, same models, the
          old password opens PostgreSQL, the old master key and session key are in use

Any failure from `stop` on rolls back: the managed units are removed, agent.yaml is put
back, the old containers get their names back and start (copy mode: on data nobody
touched). A kill -9 or a power loss between steps leaves the journal at the last step
done; running `aistack migrate` again continues from there.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from .. import podman_api
from ..atomic import write_atomic
from ..backup.restore import SystemdUnits, restore_backup
from ..backup.runner import BackupRunner
from ..backup.sources import PodmanExecSource
from ..backup.store import BackupStore
from ..config import BackupConfig, ConfigError, parse_config
from ..config_text import replace_top_level, stack_section
from ..stack import probes
from . import checks, manifest
from .copy import copy_tree, size_text, tree_size
from .source import DATA_ROLES, OLD_SUFFIX, START_ORDER, OldStack, find_containers
from .state import STEPS, State

Mode = Literal["copy", "in-place"]
FAULT_ENV = "AISTACK_MIGRATE_FAULT"  # fault injection for tests: kill-before:STEP


_SECRET_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class MigrateError(Exception):
    """A step failed; the message says what and where."""


class Refused(MigrateError):
    """The checks refused: nothing was changed."""

    def __init__(self, refusals: list[str]) -> None:
        self.refusals = refusals
        super().__init__("; ".join(refusals))


class Agent(Protocol):
    """The running agent, through its API (the CLI's client)."""

    def reload(self) -> None: ...
    def apply(self) -> dict[str, Any]: ...


@dataclass
class Options:
    mode: Mode = "copy"
    old_stopped: bool = False
    pg_upgrade: bool = False
    config_path: Path = Path("/etc/aistack/agent.yaml")
    secrets_dir: Path = Path("/etc/aistack/secrets")
    socket: Path = Path("/run/podman/podman.sock")
    volumes_root: Path = Path("/var/lib/containers/storage/volumes")


@dataclass
class Report:
    """What the migration did, for the person and for --json."""

    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    moved: list[dict[str, Any]] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


MIGRATE_LEAD = "# stack: written by aistack migrate"


def desired_config(old: OldStack, options: Options, current: str) -> str:
    """agent.yaml with the stack: section of the project (and the backups' names when the
    project's database differs); the rest of the file, comments included, is kept."""
    stack = copy.deepcopy(old.stack["stack"])
    if options.mode == "in-place":
        for role, data in old.data.items():
            stack[role]["data"] = str(data.path)
    block = yaml.safe_dump({"stack": stack}, sort_keys=False, default_flow_style=False, width=100)
    if extra := stack_section(current).get("extra"):
        stack["extra"] = extra  # the extra services stay in the stack
    head = f"{MIGRATE_LEAD} from {', '.join(map(str, old.files))}\n"
    text = replace_top_level(current, "stack", head + block, lead=MIGRATE_LEAD)
    if old.postgres is not None:
        database, user = old.postgres
        wanted = {"database": database, "user": user}
        if (database, user) != ("litellm", "llmproxy"):
            loaded = yaml.safe_load(text) or {}
            backups = dict(loaded.get("backups") or {})
            backups.update(wanted)
            body = yaml.safe_dump({"backups": backups}, sort_keys=False)
            text = replace_top_level(text, "backups", body)
    return text


def config_diff(current: str, wanted: str, path: Path) -> str:
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            f"{path} (now)",
            f"{path} (after migrate)",
        )
    )


class Migration:
    """One run of the steps over the journal; `say` prints progress."""

    def __init__(
        self,
        old: OldStack,
        options: Options,
        state: State,
        agent: Agent,
        say: Callable[[str], None],
    ) -> None:
        self.old = old
        self.options = options
        self.state = state
        self.agent = agent
        self.say = say
        self.report = Report()

    # --- the preflight -----------------------------------------------------------------

    def findings(self) -> checks.Findings:
        """Everything checks.py finds, with this host's Podman and folders."""
        found = checks.Findings()
        try:
            self._findings(found)
        except podman_api.PodmanApiError as exc:
            found.refusals.append(f"Podman: {exc}")
        return found

    def _findings(self, found: checks.Findings) -> None:
        old, opt = self.old, self.options
        checks.check_secrets(old, found)
        for name in old.secret_names():  # each becomes a file in the secrets folder
            if not _SECRET_FILE.fullmatch(name):
                found.refusals.append(
                    f"a secret of the project would be named {name!r}: not "
                    "a plain file name (letters, digits, '_', '-', '.')"
                )
        try:  # the config it will write must load, before anything is stopped
            _validate(desired_config(old, opt, _read(opt.config_path) or ""), opt.config_path)
        except MigrateError as exc:
            found.refusals.append(str(exc))
        for role, (_svc, target, _vol) in DATA_ROLES.items():
            if role in old.containers and role not in old.data:
                found.warnings.append(
                    f"{old.containers[role].service} keeps no data folder at {target}: "
                    "nothing of it to move"
                )
        image = str(old.stack["stack"].get("postgres", {}).get("image", ""))
        env = podman_api.image_env(opt.socket, image) if image else None
        listing = podman_api.containers(opt.socket)
        checks.check_postgres(old, env, found, opt.pg_upgrade)
        have, want = found.facts.get("postgres_data_major"), found.facts.get("postgres_image_major")
        found.facts["pg_upgrade"] = bool(opt.pg_upgrade and have and want and have != want)
        if found.facts["pg_upgrade"]:
            if opt.mode != "copy":
                found.refusals.append(
                    f"--pg-upgrade with --data in-place: PostgreSQL {want} cannot open the "
                    f"{have} folder where it is; the upgrade restores a dump into a new "
                    "managed volume (--data copy)"
                )
            if opt.old_stopped:
                found.refusals.append(
                    "--pg-upgrade with --old-stopped: the dump is taken through the old "
                    f"PostgreSQL {have}; start it (the old stack) and run again"
                )
        elif opt.pg_upgrade and have and have == want:
            found.warnings.append(
                f"--pg-upgrade: the data is PostgreSQL {have} already, as the image; "
                "it is copied as it is"
            )
        mine = find_containers(old, listing)
        found.facts["old_containers"] = {r: c.name for r, c in mine.items()}
        running = {r for r, c in mine.items() if c.running}
        if opt.old_stopped and running:
            found.refusals.append(
                "--old-stopped, but these old containers run: "
                + ", ".join(mine[r].name for r in sorted(running))
            )
        if not opt.old_stopped and "postgres" in old.containers and "postgres" not in running:
            found.refusals.append(
                f"the old PostgreSQL ({' or '.join(old.containers['postgres'].names)}) is "
                "not running: the safety backup is taken through it. Start the old stack, "
                "or stop it and pass --old-stopped"
            )
        checks.check_holders(old, listing, {c.name for c in mine.values()}, found)
        if opt.old_stopped:
            checks.check_open_files(old, found)
        if opt.mode == "copy":
            checks.check_disk(old, opt.volumes_root, found, {})
            for role, data in old.data.items():
                where = podman_api.volume_mountpoint(opt.socket, data.volume)
                if where is not None and any(where.iterdir()):
                    found.refusals.append(
                        f"the managed volume {data.volume} already holds data ({where}): "
                        f"copying {role}'s folder over it would mix two stacks. Remove it "
                        f"(podman volume rm {data.volume}) or use --data in-place"
                    )
        else:
            checks.check_in_place(old, found)
        published = {port for c in mine.values() for port in c.ports}
        ports = [
            p
            for s in old.stack["stack"].values()
            if isinstance(s, dict)
            for p in s.get("ports", [])
            if s.get("enabled", True)
        ]
        checks.check_ports(ports, published, found)

    def plan_text(self, found: checks.Findings) -> list[str]:
        old, opt = self.old, self.options
        lines = [f"project {old.project} ({', '.join(map(str, old.files))}), data: {opt.mode}"]
        for role, data in sorted(old.data.items()):
            size = found.facts.get(f"{role}_bytes")
            into = data.volume if opt.mode == "copy" else f"{data.path} (bound as it is)"
            lines.append(
                f"  {role:10} {data.path} -> {into}"
                + (f" ({size_text(int(size))})" if isinstance(size, int) else "")
            )
        names = ", ".join(old.secret_names()) or "none"
        lines.append(f"  secrets carried into {opt.secrets_dir}: {names}")
        lines.append(f"  steps: {' -> '.join(STEPS)}")
        return lines

    # --- the steps ---------------------------------------------------------------------

    async def run(self) -> Report:
        for step in STEPS:
            if self.state.is_done(step):
                continue
            _fault("kill-before", step)
            self.say(f"== {step}")
            started = time.monotonic()
            try:
                _fault("fail-at", step)
                await getattr(self, f"step_{step}")()
            except Exception as exc:
                why = str(exc) if isinstance(exc, MigrateError) else f"{type(exc).__name__}: {exc}"
                self.state.failure = f"{step}: {why}"
                self.state.save()
                if step != "check":
                    self.say(f"{step} failed: {why}; rolling back")
                    await self.rollback(keep_volumes=False)
                raise MigrateError(f"{step} failed: {why}") from exc
            self.state.seconds[step] = round(time.monotonic() - started, 3)
            self.state.finish(step)
        self.state.phase = "done"
        self.state.save()
        # the whole migration's, whichever runs of the command did the steps
        self.report.steps = dict(self.state.seconds)
        self.report.moved = list(self.state.moved)
        return self.report

    async def step_check(self) -> None:
        found = self.findings()
        if found.refusals:
            raise Refused(found.refusals)

    async def step_quiesce(self) -> None:
        if self.options.old_stopped:
            return
        mine = self._old_containers()
        for role in reversed(START_ORDER):
            if role != "postgres" and role in mine and mine[role].running:
                self.say(f"stopping the old {mine[role].name}")
                podman_api.container_stop(self.options.socket, mine[role].name)

    async def step_backup(self) -> None:
        if self.old.postgres is None or self.options.old_stopped:
            if self.old.postgres is not None:
                self.report.notes.append(
                    "no safety backup: the old stack was stopped "
                    "(--old-stopped); the old folder is kept as it was"
                )
            return
        database, user = self.old.postgres
        container = self._old_containers()["postgres"].name
        config = BackupConfig(
            enabled=True,
            container=container,
            database=database,
            user=user,
            directory=self.state.path.parent / "backups",
        )
        self.say(f"safety backup of {database} through {container} (pg_dump, verified)")
        result = await BackupRunner(config, self.options.socket).run("migrate")
        if not result.ok:
            raise MigrateError(f"the safety backup failed at {result.stage}: {result.error}")
        self.state.backup = {
            "id": result.id,
            "size_bytes": result.size_bytes,
            "directory": str(config.directory),
            "sha256": result.sha256,
        }

    async def step_manifest(self) -> None:
        if self.old.postgres is None or self.options.old_stopped:
            return
        database, user = self.old.postgres
        container = self._old_containers()["postgres"].name
        source = PodmanExecSource(self.options.socket, container, user)
        self.state.manifest["postgres"] = await manifest.postgres(source, database)
        tables = self.state.manifest["postgres"]["tables"]
        self.say(
            f"PostgreSQL: {len(tables)} tables, "
            f"{sum(t['rows'] for t in tables.values())} rows recorded"
        )

    async def step_stop(self) -> None:
        socket = self.options.socket
        mine = self._old_containers()
        for role in reversed(START_ORDER):
            c = mine.get(role)
            if c is None:
                continue
            base = c.name.removesuffix(OLD_SUFFIX)
            if c.restart_policy not in ("", "no"):
                # podman-restart.service would start it at the next boot, beside the
                # managed one (in place: two servers on one data folder); the old policy
                # is kept in the journal and put back by a rollback
                self.state.restart_policies[base] = c.restart_policy
                self.state.save()
                podman_api.container_restart_policy(socket, c.name, "no")
            if c.running:
                self.say(f"stopping the old {c.name}")
                podman_api.container_stop(socket, c.name)
            if not c.name.endswith(OLD_SUFFIX):
                podman_api.container_rename(socket, c.name, c.name + OLD_SUFFIX)
            if c.name.removesuffix(OLD_SUFFIX) + OLD_SUFFIX not in self.state.stopped:
                self.state.stopped.append(c.name.removesuffix(OLD_SUFFIX) + OLD_SUFFIX)
                self.state.save()
        found = checks.Findings()
        checks.check_holders(self.old, podman_api.containers(socket), set(), found)
        checks.check_open_files(self.old, found)
        if found.refusals:
            raise MigrateError("; ".join(found.refusals))
        for role, data in self.old.data.items():
            if role == "ollama":
                self.state.manifest["ollama"] = manifest.ollama(data.path)
            elif role == "open_webui":
                self.state.manifest["open_webui"] = manifest.webui(data.path)

    async def step_adopt(self) -> None:
        self.state.moved = []  # a rerun of this step says it again
        for role, data in sorted(self.old.data.items()):
            size = tree_size(data.path)
            if role == "postgres" and self.state.pg_upgrade:
                backup = self.state.backup
                self.state.moved.append(
                    {
                        "service": role,
                        "from": str(data.path),
                        "to": data.volume,
                        "volume": data.volume,
                        "bytes": backup.get("size_bytes") or 0,
                        "by": f"dump {backup.get('id')} and restore",
                    }
                )
                continue  # the new major initialises the volume; `restore` fills it
            if self.options.mode == "in-place":
                self.state.moved.append(
                    {"service": role, "from": str(data.path), "to": str(data.path), "bytes": size}
                )
                continue
            into = podman_api.volume_mountpoint(self.options.socket, data.volume, create=True)
            assert into is not None
            self.say(f"copying {data.path} -> {data.volume} ({size_text(size)})")
            done = [0, time.monotonic()]

            def progress(n: int, done: list[Any] = done, size: int = size) -> None:
                done[0] += n
                if time.monotonic() - done[1] >= 2:
                    done[1] = time.monotonic()
                    self.say(f"  {size_text(done[0])} of {size_text(size)}")

            stats = copy_tree(data.path, into, progress)
            self.state.moved.append(
                {
                    "service": role,
                    "from": str(data.path),
                    "to": str(into),
                    "volume": data.volume,
                    "bytes": size,
                    "copied_files": stats.files,
                    "skipped": stats.skipped,
                }
            )
            self._compare_files(role, into, exact=True)

    async def step_config(self) -> None:
        opt = self.options
        current = _read(opt.config_path)
        saved = opt.config_path.with_name(opt.config_path.name + ".pre-migrate")
        if not self.state.config_saved:
            if current is not None:
                write_atomic(saved, current.encode(), mode=0o600)
            self.state.config_saved = str(saved) if current is not None else "none"
            self.state.save()
        before = _read(saved) if self.state.config_saved != "none" else ""
        wanted = desired_config(self.old, opt, before or "")
        _validate(wanted, opt.config_path)
        opt.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        opt.secrets_dir.chmod(0o700)
        for name, value in sorted(self.old.secrets.items()):
            path = opt.secrets_dir / name
            if _read(path) != value:
                write_atomic(path, value.encode(), mode=0o600)
        write_atomic(opt.config_path, wanted.encode(), mode=0o644)
        self.say(
            f"wrote {opt.config_path} and {len(self.old.secrets)} secrets; reloading the agent"
        )
        self.agent.reload()

    async def step_up(self) -> None:
        self.say("aistack up: the managed units start in order, each until healthy")
        doc = self.agent.apply()
        if not doc.get("ok"):
            failed = "; ".join(f"{k}: {v}" for k, v in (doc.get("failed") or {}).items())
            problems = "; ".join(doc.get("problems") or [])
            raise MigrateError(f"aistack up did not come up: {failed or problems or doc}")

    async def step_restore(self) -> None:
        """--pg-upgrade: the safety dump restored into the new major's fresh cluster
        (LiteLLM stopped meanwhile, as for any restore: docs/backups.md)."""
        if not self.state.pg_upgrade or self.old.postgres is None:
            return
        database, user = self.old.postgres
        directory = Path(self.state.backup["directory"])
        config = BackupConfig(
            enabled=True, container="postgres", database=database, user=user, directory=directory
        )
        source = PodmanExecSource(self.options.socket, "postgres", user)
        backup_id = str(self.state.backup["id"])
        self.say(f"restoring {backup_id} into the new PostgreSQL (LiteLLM stopped meanwhile)")
        done = await restore_backup(
            config, source, BackupStore(directory), backup_id, units=SystemdUnits()
        )
        if not done.ok:
            raise MigrateError(
                f"the restore into the new major failed at {done.stage}: {done.error}"
            )
        for problem in done.globals_problems:
            self.report.notes.append(f"restore: roles: {problem}")

    async def step_verify(self) -> None:
        problems: list[str] = []
        socket = self.options.socket
        if self.old.postgres is not None:
            database, user = self.old.postgres
            source = PodmanExecSource(socket, "postgres", user)
            if "postgres" in self.state.manifest:
                after = await manifest.postgres(source, database)
                found = _pg_compare(self.state.manifest["postgres"], after)
                problems += found[0]
                self.report.notes += found[1]
                if not found[0]:
                    tables = after["tables"]
                    self.report.verified.append(
                        f"PostgreSQL {database}: {len(tables)} tables, "
                        f"{sum(t['rows'] for t in tables.values())} rows, checksums as before"
                    )
            password = self.old.secrets.get("postgres-password", "")
            result = podman_api.run_exec(
                socket,
                "postgres",
                ["psql", "-X", "-h", "127.0.0.1", "-U", user, "-d", database, "-Atc", "SELECT 1"],
                60,
                env=[f"PGPASSWORD={password}"],
            )
            if result.exit_code != 0:
                problems.append("the old POSTGRES_PASSWORD does not open the database over TCP")
            else:
                self.report.verified.append("the old POSTGRES_PASSWORD opens the database")
        for role in ("ollama", "open_webui"):
            if role in self.old.data and role in self.state.manifest:
                where = self._managed_data(role)
                problems += self._compare_files(role, where, exact=False, collect=True)
        for name, env, secret in (
            ("litellm", "LITELLM_MASTER_KEY", "litellm-master-key"),
            ("open-webui", "WEBUI_SECRET_KEY", "webui-secret-key"),
        ):
            if secret not in self.old.secrets:
                continue
            if _process_env(socket, name).get(env) != self.old.secrets[secret]:
                problems.append(f"{name} does not run with the old {env}")
            else:
                self.report.verified.append(f"{name} runs with the old {env}")
        problems += await self._master_key_accepted()
        if problems:
            raise MigrateError("verification: " + "; ".join(problems))

    async def _master_key_accepted(self) -> list[str]:
        """Clients keep working: LiteLLM's API takes the old master key (and, to show it
        checks keys at all, refuses a request without one), on its published port."""
        key = self.old.secrets.get("litellm-master-key")
        ports = self.old.stack["stack"].get("litellm", {}).get("ports", ["127.0.0.1:4000"])
        if key is None or not ports:
            return []
        host, _, port = str(ports[0]).rpartition(":")
        address = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host.strip("[]")
        with_key = await probes.litellm_key_status(address, int(port), key, 30)
        without = await probes.litellm_key_status(address, int(port), None, 30)
        if with_key != 200:
            return [f"LiteLLM at {address}:{port} answered {with_key} to the old master key"]
        self.report.verified.append(
            f"LiteLLM ({address}:{port}) accepts the old master key (HTTP 200; "
            f"{without} without a key)"
        )
        return []

    # --- rollback ----------------------------------------------------------------------

    async def rollback(self, keep_volumes: bool) -> None:
        """Managed units out, agent.yaml back, the old containers back and started.

        After a failed run (`keep_volumes=False`) the managed volumes that copy mode
        filled are removed too: they hold a copy, the old folders are the data, and a
        new run refuses volumes that hold data. A rollback asked for later keeps them:
        the new stack may have written there since."""
        opt = self.options
        if self.state.is_done("config") or self.state.config_saved:
            current = _read(opt.config_path) or ""
            off = replace_top_level(
                current,
                "stack",
                yaml.safe_dump(
                    {
                        "stack": {
                            s: {"enabled": False}
                            for s in ("ollama", "open_webui", "litellm", "postgres")
                        }
                    }
                ),
                lead=MIGRATE_LEAD,
            )
            try:
                write_atomic(opt.config_path, off.encode(), mode=0o644)
                self.agent.reload()
                self.agent.apply()  # stops and removes the managed units
            except Exception as exc:  # the old stack comes back whatever the agent says
                self.say(f"rollback: the managed units could not be removed: {exc}")
            saved = (
                Path(self.state.config_saved)
                if self.state.config_saved not in ("", "none")
                else None
            )
            if saved is not None and saved.exists():
                write_atomic(opt.config_path, saved.read_bytes(), mode=0o644)
            elif self.state.config_saved == "none":
                opt.config_path.unlink(missing_ok=True)
            try:
                self.agent.reload()
            except Exception as exc:
                self.say(f"rollback: the agent did not reload: {exc}")
        if opt.mode == "copy" and not keep_volumes:
            for data in self.old.data.values():
                try:
                    if podman_api.volume_delete(opt.socket, data.volume):
                        self.say(f"removed the managed volume {data.volume} (a copy)")
                except podman_api.PodmanApiError as exc:
                    self.say(f"rollback: {data.volume} stays: {exc}")
        mine = self._old_containers()
        for role in START_ORDER:
            c = mine.get(role)
            if c is None:
                continue
            name = c.name.removesuffix(OLD_SUFFIX)
            if c.name.endswith(OLD_SUFFIX):
                leftover = podman_api.inspect_container(opt.socket, name)
                if leftover is not None:  # a managed container by the same name
                    podman_api.container_stop(opt.socket, name)
                podman_api.container_rename(opt.socket, c.name, name)
            policy = self.state.restart_policies.get(name)
            if policy:
                podman_api.container_restart_policy(opt.socket, name, policy)
            self.say(f"starting the old {name}")
            podman_api.container_start(opt.socket, name)
        self.state.phase = "rolled-back"
        self.state.save()

    # --- helpers -----------------------------------------------------------------------

    def _old_containers(self) -> dict[str, podman_api.ContainerSummary]:
        return find_containers(self.old, podman_api.containers(self.options.socket))

    def _managed_data(self, role: str) -> Path:
        data = self.old.data[role]
        if self.options.mode == "in-place":
            return data.path
        where = podman_api.volume_mountpoint(self.options.socket, data.volume)
        if where is None:
            raise MigrateError(f"the managed volume {data.volume} is gone")
        return where

    def _compare_files(
        self, role: str, where: Path, exact: bool, collect: bool = False
    ) -> list[str]:
        before = self.state.manifest.get(role)
        if before is None or role not in ("ollama", "open_webui"):
            return []  # PostgreSQL's data is compared through PostgreSQL (verify)
        after = manifest.ollama(where) if role == "ollama" else manifest.webui(where)
        # the running Open WebUI may add rows (and tables, after an upgrade); none may go
        found = manifest.compare(before, after, role, grown=not exact)
        if found and not collect:
            raise MigrateError("the copy differs: " + "; ".join(found))
        if not found:
            what = (
                f"{len(after['models'])} models, {len(after['blobs'])} blobs"
                if role == "ollama"
                else f"{len(after.get('tables', {}))} tables, "
                f"integrity {after.get('integrity', 'absent')}"
            )
            self.report.verified.append(f"{role} ({where}): {what}, as before")
        return found


def _pg_compare(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Lost rows or tables are failures; a table that only grew or changed its content
    is a note: the new LiteLLM writes its own tables as it starts."""
    problems, notes = [], []
    for table, value in before["tables"].items():
        got = after["tables"].get(table)
        if got is None:
            problems.append(f"PostgreSQL: table {table} is missing")
        elif got["rows"] < value["rows"]:
            problems.append(f"PostgreSQL: {table} had {value['rows']} rows, now {got['rows']}")
        elif got != value:
            notes.append(
                f"PostgreSQL: {table} changed since the new stack started "
                f"({value['rows']} rows before, {got['rows']} now)"
            )
    return problems, notes


def _process_env(socket: Path, container: str) -> dict[str, str]:
    """The environment the container's main process runs with (Podman secrets included,
    which `podman inspect` does not show). Compared, never printed."""
    result = podman_api.run_exec(socket, container, ["cat", "/proc/1/environ"], 30, cap=1 << 20)
    if result.exit_code != 0:
        return {}
    pairs = (item.partition("=") for item in result.stdout.split("\0") if "=" in item)
    return {key: value for key, _, value in pairs}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _validate(text: str, path: Path) -> None:
    """The agent.yaml migrate would write must load (checked in memory: nothing written)."""
    try:
        parse_config(text, str(path))
    except ConfigError as exc:
        raise MigrateError("the new agent.yaml would be invalid: " + "; ".join(exc.problems)) \
            from None  # fmt: skip


def _fault(kind: str, step: str) -> None:
    """Fault injection (tests): AISTACK_MIGRATE_FAULT=kill-before:STEP kills this process
    with SIGKILL just before STEP, as a crash or a power cut would; fail-at:STEP makes
    STEP fail, as a real failure there would."""
    if os.environ.get(FAULT_ENV) != f"{kind}:{step}":
        return
    if kind == "kill-before":
        os.kill(os.getpid(), signal.SIGKILL)
    raise MigrateError(f"injected failure ({FAULT_ENV}={kind}:{step})")
