"""A compose project recognisable as the seed's AI stack -> aistack's `stack:` config.

`aistack import-compose --stack-config FILE` writes the `stack:` section of
/etc/aistack/agent.yaml that runs the same stack as aistack's managed units, so a user
of the seed's compose file moves to `aistack up` in one step. The project is recognised
by its images, never by service names: Ollama (`ollama/ollama`), Open WebUI
(`open-webui/open-webui`), and optionally LiteLLM (`berriai/litellm*`) with PostgreSQL
(`postgres`), each at most once, and no other service (the managed stack could not run it).

What is carried: images, published ports of the service's own container port (as host
address:port; no host address means 0.0.0.0, as under Compose), environment variables
that are not secrets, extra volumes, the GPU (`gpu:`), Traefik labels (`proxy: traefik`,
the Host() rule as `hostname`, `traefik.docker.network` as `proxy_network`), PostgreSQL's
database and user, LiteLLM's `model_list` (from the config file the compose project
mounts) and the provider keys its environment carries. Secrets are never written into
the YAML: they are listed as things to do (aistack generates its own, or reads them
from /etc/aistack/secrets/<name>). Everything else the managed stack does its own way
is a note.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import published_address
from . import dotenv
from .errors import ComposeError, name_like
from .loader import Project
from .report import Report
from .values import command_words, names_registry, qualify_image, scalar
from .yamlload import load_plain

SECRETS_DIR = "/etc/aistack/secrets"


@dataclass(frozen=True)
class Role:
    """One service of the managed stack, as the compose project may hold it."""

    key: str  # the section under stack:
    name: str  # the managed unit/container name
    port: int  # its container port
    data: str | None  # the container path of its data volume
    resolves_as: tuple[str, ...]  # host names that reach it on the managed network


ROLES = (
    Role("ollama", "ollama", 11434, "/root/.ollama", ("ollama",)),
    Role("open_webui", "open-webui", 8080, "/app/backend/data", ("open-webui",)),
    Role("litellm", "litellm", 4000, None, ("litellm",)),
    Role("postgres", "postgres", 5432, "/var/lib/postgresql/data", ("postgres", "db")),
)
_ROLE = {r.key: r for r in ROLES}
# the managed volume each data role's data lives in (units/*.volume's VolumeName=)
DATA_VOLUMES = {
    "ollama": "aistack-ollama-models",
    "open_webui": "aistack-open-webui-data",
    "postgres": "aistack-postgres-data",
}
LITELLM_CONFIG_DEFAULT = "/app/config.yaml"


def role_of_image(image: str) -> str | None:
    """The managed service an image is (by repository path, any registry or tag)."""
    ref = qualify_image(image).split("@")[0]
    path = ref.partition("/")[2] if names_registry(ref) else ref
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path = path[: len(path) - len(last)] + last.split(":", 1)[0]
    if path == "ollama/ollama":
        return "ollama"
    if path == "open-webui/open-webui":
        return "open_webui"
    if path.startswith("berriai/litellm"):
        return "litellm"
    if path in ("library/postgres", "postgres"):
        return "postgres"
    return None


# Secrets the managed stack generates (or derives), by service: compose name -> (file, why).
_MANAGED_SECRETS: dict[tuple[str, str], tuple[str, str]] = {
    ("open_webui", "WEBUI_SECRET_KEY"): ("webui-secret-key", "aistack generates its own"),
    ("open_webui", "OPENAI_API_KEY"): (
        "litellm-master-key",
        "aistack sets it to LiteLLM's master key",
    ),
    ("litellm", "LITELLM_MASTER_KEY"): ("litellm-master-key", "aistack generates its own"),
    ("postgres", "POSTGRES_PASSWORD"): ("postgres-password", "aistack generates its own"),
}
# Secrets of the other services that an env_file shared by the project hands LiteLLM too.
_OTHERS_SECRETS = frozenset({"POSTGRES_PASSWORD", "WEBUI_SECRET_KEY"})
_SECRET_WORDS = frozenset(
    {"PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "APIKEY", "CREDENTIAL",
     "CREDENTIALS", "PRIVATE", "AUTH"}
)  # fmt: skip
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)
_NOT_SECRET_VALUE = re.compile(r"(?i)true|false|yes|no|on|off|\d{1,6}|")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_RULE = re.compile(r"Host\(`([^`]+)`\)")


def is_secret(name: str, value: str) -> bool:
    """A value that must not be written into agent.yaml: by its name (PASSWORD, SECRET,
    TOKEN, KEY... as a word of it) unless the value is a switch or a small number, or
    a URL with credentials in it (DATABASE_URL)."""
    if _URL_CREDENTIALS.search(value):
        return True
    words = set(name.upper().split("_"))
    return bool(words & _SECRET_WORDS) and not _NOT_SECRET_VALUE.fullmatch(value.strip())


@dataclass
class StackImport:
    """The outcome: `recognised` with `data` ({"stack": {...}}), else `why` not."""

    recognised: bool
    why: str = ""
    services: dict[str, str] = field(default_factory=dict)  # stack key -> compose service
    data: dict[str, Any] = field(default_factory=dict)
    secrets_todo: list[str] = field(default_factory=list)
    # file name in /etc/aistack/secrets -> the project's value (for `aistack migrate`,
    # which carries them; never rendered, logged or printed)
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)

    def render(self, sources: list[Path]) -> str:
        names = " + ".join(str(s) for s in sources)
        head = [
            f"# The stack: section of /etc/aistack/agent.yaml, written by aistack "
            f"import-compose from {names}.",
            "# Merge it into /etc/aistack/agent.yaml, check it (aistack check-config), "
            "then: aistack up",
            "# Secrets of the compose project are not in this file. Before `aistack up`:",
            *(f"#   - {todo}" for todo in self.secrets_todo),
        ]
        if not self.secrets_todo:
            head[-1] = "# Secrets of the compose project are not in this file."
        body = yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False, width=100)
        return "\n".join(head) + "\n" + body


def recognise(project: Project) -> tuple[dict[str, str], str]:
    """stack key -> compose service, or ({}, why not)."""
    found: dict[str, list[str]] = {}
    others: list[str] = []
    for name in sorted(project.services):
        image = project.services[name].get("image")
        role = role_of_image(scalar(image)) if image else None
        if role is None:
            what = f"image {scalar(image)}" if image else "no image"
            others.append(f"{name} ({what})")
        else:
            found.setdefault(role, []).append(name)
    problems = []
    if others:
        problems.append(
            "the managed stack only runs Ollama, Open WebUI, LiteLLM and PostgreSQL; "
            f"this project has other services: {', '.join(others)}"
        )
    for role, names in sorted(found.items()):
        if len(names) > 1:
            problems.append(f"{len(names)} services use the {_ROLE[role].name} image "
                            f"({', '.join(names)}); the managed stack runs one")  # fmt: skip
    for role in ("ollama", "open_webui"):
        if role not in found:
            problems.append(f"no {_ROLE[role].name} service (image {_IMAGES[role]})")
    if ("litellm" in found) != ("postgres" in found):
        has, lacks = ("litellm", "postgres") if "litellm" in found else ("postgres", "litellm")
        problems.append(
            f"a {_ROLE[has].name} service without {_ROLE[lacks].name}: the seed's stack "
            "pairs LiteLLM with its PostgreSQL database"
        )
    if problems:
        return {}, "; ".join(problems)
    return {role: names[0] for role, names in found.items()}, ""


_IMAGES = {
    "ollama": "ollama/ollama",
    "open_webui": "open-webui/open-webui",
    "litellm": "berriai/litellm*",
    "postgres": "postgres",
}


class _Builder:
    def __init__(self, project: Project, services: dict[str, str], report: Report) -> None:
        self.project = project
        self.services = services
        self.report = report
        self.todo: list[str] = []
        self.values: dict[str, str] = {}  # secret file -> value (StackImport.secret_values)
        self.provider_keys: list[str] = []
        # Host names the compose project reaches each service by -> the managed name.
        self.rehost: dict[str, str] = {}
        for key, service in services.items():
            role = _ROLE[key]
            svc = project.services[service]
            names = {service, scalar(svc.get("container_name") or service)}
            for spec in (svc.get("networks") or {}).values():
                names.update(scalar(a) for a in (spec or {}).get("aliases") or [])
            for name in names - {n for r in ROLES for n in r.resolves_as}:
                self.rehost[name] = role.name

    def note(self, key: str, compose_key: str, why: str) -> None:
        self.report.note(f"stack.{key}", compose_key, why)

    def secret(self, text: str) -> None:
        if text not in self.todo:
            self.todo.append(text)
            self.report.act(f"stack config: {text}")

    # --- per service --------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        stack: dict[str, Any] = {}
        gpu = self.gpu()
        proxy = self.proxy()
        stack["gpu"] = gpu
        if proxy is not None:
            stack["proxy"] = "traefik"
            stack["proxy_network"] = proxy
        for role in ROLES:
            if role.key not in self.services:
                stack[role.key] = {"enabled": False}
                continue
            stack[role.key] = self.service(role, proxy is not None)
        return {"stack": stack}

    def service(self, role: Role, proxied: bool) -> dict[str, Any]:
        name = self.services[role.key]
        svc = self.project.services[name]
        out: dict[str, Any] = {"image": qualify_image(scalar(svc["image"]))}
        ports = self.ports(role, svc)
        if ports is not None:
            out["ports"] = ports
            remote = [p for p in ports if _remote(p)]
            if role.key == "ollama" and remote:
                # agent.yaml refuses Ollama (no authentication) on another host's reach
                # without this; the compose project published it so: carried, and said.
                out["allow_remote"] = True
                self.note(
                    role.key,
                    "ports",
                    f"Ollama is published on {', '.join(remote)}, reachable from other "
                    "hosts and without authentication, so the stack config says "
                    "allow_remote: true; publish 127.0.0.1 only unless other hosts need it",
                )
        env = self.environment(role, svc)
        if role.key == "postgres":
            out["database"], out["user"] = self.postgres_names(env)
        if env:
            out["env"] = env
        volumes = self.volumes(role, svc)
        if volumes:
            out["volumes"] = volumes
        if role.key in ("open_webui", "litellm") and proxied:
            host = self.hostname(role, svc)
            if host:
                out["hostname"] = host
        if role.key == "litellm":
            models = self.model_list(svc)
            if models:
                out["model_list"] = models
            if self.provider_keys:
                out["provider_keys"] = list(dict.fromkeys(self.provider_keys))
        self.unmodelled(role, svc)
        return out

    def ports(self, role: Role, svc: Mapping[str, Any]) -> list[str] | None:
        found: list[str] = []
        for i, port in enumerate(svc.get("ports") or []):
            key = f"ports[{i}]"
            published, host_ip = port.get("published"), port.get("host_ip")
            if port.get("target") != str(role.port) or port.get("protocol", "tcp") != "tcp":
                self.note(
                    role.key,
                    key,
                    f"only {role.name}'s own port {role.port}/tcp is published by the "
                    f"managed stack; {port.get('target')}/{port.get('protocol', 'tcp')} "
                    "is not carried",
                )
                continue
            if not published or "-" in published:
                self.note(
                    role.key,
                    key,
                    "a random or ranged host port is not carried; the managed stack needs "
                    "a fixed one",
                )
                continue
            if host_ip:
                address = f"[{host_ip}]" if ":" in host_ip else host_ip
            else:
                address = "0.0.0.0"
                self.note(
                    role.key,
                    key,
                    f"compose publishes {published} on every address, so the stack config "
                    f"says 0.0.0.0:{published}; the managed default is loopback only "
                    f"(127.0.0.1:{role.port}): change it if other hosts need not reach "
                    f"{role.name}",
                )
            found.append(f"{address}:{published}")
        if not svc.get("ports"):
            self.note(
                role.key,
                "ports",
                f"compose publishes no port; the managed default 127.0.0.1:{role.port} "
                "(loopback only) is kept, which the agent uses to reach the service; "
                "write ports: [] to publish none",
            )
            return None
        return found

    def service_env(self, svc: Mapping[str, Any]) -> dict[str, str]:
        """The container's environment as Compose sets it: env_file, then environment."""
        env: dict[str, str] = {}
        for entry in svc.get("env_file") or []:
            path = Path(entry["path"])
            if not os.path.isfile(path):
                continue  # the conversion reports it (error, or a note when not required)
            raw = entry.get("format") == "raw"
            text = self.project.reader.text(path)  # read (bounded) by the conversion
            env.update(dotenv.parse(text, path, self.project.environment.get, raw=raw))
        for key, value in (svc.get("environment") or {}).items():
            if value is None:
                found = self.project.environment.get(key)
                if found is None:
                    env.pop(key, None)
                    continue
                value = found
            env[key] = scalar(value)
        return env

    def environment(self, role: Role, svc: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in sorted(self.service_env(svc).items()):
            key = f"environment.{name}"
            if role.key == "postgres" and name in ("POSTGRES_DB", "POSTGRES_USER"):
                out[name] = value  # taken out again by postgres_names()
                continue
            if (role.key, name) in _MANAGED_SECRETS:
                file, why = _MANAGED_SECRETS[role.key, name]
                if role.key != "open_webui" or name != "OPENAI_API_KEY":  # LiteLLM's decides
                    self.values.setdefault(file, value)
                keep = f"to keep yours, put it in {SECRETS_DIR}/{file}"
                if file == "litellm-master-key" and role.key == "open_webui":
                    keep = f"the value is {SECRETS_DIR}/{file}"
                extra = ""
                if name == "POSTGRES_PASSWORD":
                    extra = (
                        " (needed to keep the existing database: PostgreSQL only reads "
                        "POSTGRES_PASSWORD when it creates an empty data directory)"
                    )
                self.secret(f"{_ROLE[role.key].name}: {name} is not copied: {why}; {keep}{extra}")
                continue
            if role.key == "litellm" and name in _OTHERS_SECRETS:
                self.note(
                    role.key,
                    key,
                    "not carried: another service's secret (an env_file shared by the "
                    "project); LiteLLM gets its database from DATABASE_URL",
                )
                continue
            if role.key == "litellm" and name == "DATABASE_URL":
                self.secret(
                    "litellm: DATABASE_URL is not copied: aistack builds it from "
                    f"stack.postgres and {SECRETS_DIR}/postgres-password (host postgres)"
                )
                continue
            if is_secret(name, value):
                if role.key == "litellm" and _ENV_NAME.fullmatch(name):
                    self.provider_keys.append(name)
                    self.values[name] = value
                    self.secret(
                        f"litellm: {name} is not copied (a secret); it is listed in "
                        f"stack.litellm.provider_keys: put it in {SECRETS_DIR}/{name} "
                        "(aistack up stops without it)"
                    )
                else:
                    self.secret(
                        f"{role.name}: {name} looks like a secret and is not copied; the "
                        f"managed stack has no secret for it: add it to "
                        f"stack.{role.key}.env yourself if agent.yaml may hold it"
                    )
                continue
            if not _ENV_NAME.fullmatch(name):
                self.note(role.key, key, "not a name stack.*.env accepts; not carried")
                continue
            fixed = self.rehosted(value)
            if fixed != value:
                self.note(
                    role.key,
                    key,
                    f"{value!r} names a service the managed stack calls otherwise: {fixed!r}",
                )
            out[name] = fixed
        return out

    def rehosted(self, value: str) -> str:
        for old, new in self.rehost.items():
            value = re.sub(rf"(//|@){re.escape(old)}(?=[:/]|$)", rf"\g<1>{new}", value)
        return value

    def postgres_names(self, env: dict[str, str]) -> tuple[str, str]:
        """POSTGRES_DB/POSTGRES_USER as the official image reads them (user defaults to
        postgres, the database to the user): that is how the existing data was made."""
        user = env.pop("POSTGRES_USER", "") or "postgres"
        database = env.pop("POSTGRES_DB", "") or user
        for key, value, default in (("database", database, "litellm"), ("user", user, "llmproxy")):
            if value != default:
                self.note(
                    "postgres",
                    key,
                    f"{value!r} differs from the backups' default ({default!r}): set "
                    f"backups.{key}: {value} in agent.yaml too",
                )
        return database, user

    def volumes(self, role: Role, svc: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        config_target = self.litellm_config_path(svc) if role.key == "litellm" else None
        for i, vol in enumerate(svc.get("volumes") or []):
            key = f"volumes[{i}]"
            kind, target, source = vol.get("type"), vol["target"], vol.get("source")
            if target == role.data:
                self.data_todo(role, kind, source)
                continue
            if target == config_target:
                continue  # read by model_list()
            if kind not in ("bind", "volume") or not source or ":" in source:
                self.note(role.key, key, f"a {kind} mount at {target} is not carried")
                continue
            if kind == "volume":
                spec = self.project.volumes.get(source) or {}
                source = scalar(spec.get("name") or f"{self.project.name}_{source}")
            options = ["ro"] if vol.get("read_only") else []
            selinux = (vol.get("bind") or {}).get("selinux")
            if selinux:
                options.append(selinux)
            out.append(f"{source}:{target}" + (f":{','.join(options)}" if options else ""))
        return out

    def data_todo(self, role: Role, kind: str | None, source: str | None) -> None:
        volume = DATA_VOLUMES[role.key]
        into = f"$(podman volume inspect --format '{{{{.Mountpoint}}}}' {volume})"
        if kind == "bind" and source:
            copy = f"cp -a {source}/. {into}/"
        elif kind == "volume" and source:
            spec = self.project.volumes.get(source) or {}
            name = scalar(spec.get("name") or f"{self.project.name}_{source}")
            copy = f"cp -a $(podman volume inspect --format '{{{{.Mountpoint}}}}' {name})/. {into}/"
        else:
            return
        self.report.act(
            f"stack config: {role.name}'s data is not moved: the managed stack keeps it in "
            f"the volume {volume}; to keep it, with {role.name} stopped: "
            f"podman volume create --ignore {volume} && {copy}"
        )

    def litellm_config_path(self, svc: Mapping[str, Any]) -> str:
        try:
            words = command_words(svc["command"]) if svc.get("command") else []
        except ValueError:  # the conversion reports it
            words = []
        for i, word in enumerate(words):
            if word == "--config" and i + 1 < len(words):
                return words[i + 1]
            if word.startswith("--config="):
                return word.split("=", 1)[1]
        return LITELLM_CONFIG_DEFAULT

    def model_list(self, svc: Mapping[str, Any]) -> list[Any]:
        target = self.litellm_config_path(svc)
        mount = next(
            (v for v in svc.get("volumes") or [] if v["target"] == target and v.get("source")),
            None,
        )
        if mount is None or mount.get("type") != "bind":
            self.note(
                "litellm",
                "command",
                f"LiteLLM's config {target} is not a file the project mounts; "
                "stack.litellm.model_list is left empty",
            )
            return []
        path = Path(mount["source"])
        try:
            # bounded, and errors never quote it: the mount may be any file (/etc/shadow)
            config = load_plain(self.project.reader.text(path), path) or {}
        except ComposeError as exc:
            where = "" if exc.path == "(file)" else f"{exc.path}: "
            self.note(
                "litellm", "volumes", f"cannot read LiteLLM's config {path}: {where}{exc.message}"
            )
            return []
        if not isinstance(config, dict):
            self.note("litellm", "volumes", f"{path} is not a LiteLLM config (a mapping)")
            return []
        if not all(name_like(k) for k in config):  # some other file: never quote its keys
            self.note("litellm", "volumes", f"{path} is not a LiteLLM config (named sections)")
            return []
        settings = config.get("general_settings")
        master = settings.get("master_key") if isinstance(settings, dict) else None
        if isinstance(master, str) and not master.startswith("os.environ/"):
            self.values["litellm-master-key"] = master  # the proxy's own setting wins
            self.secret(
                f"litellm: general_settings.master_key in {path} is not copied: aistack "
                f"generates its own; to keep yours, put it in {SECRETS_DIR}/litellm-master-key"
            )
        for extra in sorted(set(config) - {"model_list"}):
            self.note(
                "litellm",
                f"{path.name}: {extra}",
                "not carried: the managed stack writes LiteLLM's config from "
                "stack.litellm.model_list only",
            )
        models = config.get("model_list") or []
        if not isinstance(models, list):
            self.note("litellm", f"{path.name}: model_list", "not a list; not carried")
            return []
        return [self.model(m, i) for i, m in enumerate(models)]

    def model(self, model: Any, index: int) -> Any:
        """One model_list entry: host names fixed, literal keys moved to provider_keys."""
        if not isinstance(model, dict):
            return model
        params = model.get("litellm_params")
        if not isinstance(params, dict):
            return model
        fixed: dict[str, Any] = {}
        for key, value in params.items():
            if isinstance(value, str) and value.startswith("os.environ/"):
                fixed[key] = value
                continue
            if isinstance(value, str) and is_secret(str(key), value):
                label = re.sub(r"[^A-Za-z0-9]+", "_", str(model.get("model_name", index)))
                env = f"MODEL_{label.strip('_').upper()}_{str(key).upper()}"
                fixed[key] = f"os.environ/{env}"
                self.provider_keys.append(env)
                self.values[env] = value
                self.secret(
                    f"litellm: model_list[{index}] has a literal {key}; the stack config "
                    f"reads it from {env} instead: put it in {SECRETS_DIR}/{env}"
                )
                continue
            fixed[key] = self.rehosted(value) if isinstance(value, str) else value
        return {**model, "litellm_params": fixed}

    # --- stack-wide ---------------------------------------------------------------------

    def gpu(self) -> str:
        svc = self.project.services[self.services["ollama"]]
        devices = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
        wants = list(devices.get("devices") or [])
        if svc.get("gpus"):
            wants.append({"driver": "nvidia"})
        for device in wants:
            caps = {
                c
                for group in device.get("capabilities") or []
                for c in (group if isinstance(group, list) else [group])
            }
            if device.get("driver") == "nvidia" or "gpu" in caps:
                if device.get("count") not in (None, "all", -1) or device.get("device_ids"):
                    self.note(
                        "ollama",
                        "deploy.resources.reservations.devices",
                        "the managed stack gives Ollama all NVIDIA GPUs (gpu: nvidia)",
                    )
                return "nvidia"
        device_paths = [str(d.get("source", d) if isinstance(d, dict) else d)
                        for d in svc.get("devices") or []]  # fmt: skip
        if any(p.startswith("/dev/kfd") for p in device_paths):
            return "amd"
        self.note(
            "ollama",
            "deploy",
            "the compose project gives Ollama no GPU, so the stack config says gpu: none "
            "(aistack's default, auto, would use a GPU it finds)",
        )
        return "none"

    def proxy(self) -> str | None:
        """The Traefik network when a proxied service carries Traefik labels, else None."""
        network = None
        proxied = False
        for key in ("open_webui", "litellm"):
            if key not in self.services:
                continue
            svc = self.project.services[self.services[key]]
            labels = svc.get("labels") or {}
            if scalar(labels.get("traefik.enable", "false")).lower() != "true":
                continue
            proxied = True
            network = network or labels.get("traefik.docker.network")
            if network is None:
                for net in svc.get("networks") or {}:
                    spec = self.project.networks.get(net) or {}
                    if spec.get("external"):
                        network = scalar(spec.get("name") or net)
                        break
        if not proxied:
            return None
        if network is None:
            self.note("proxy_network", "labels", "no traefik.docker.network label; using proxy")
            network = "proxy"
        self.report.act(
            f"stack config: the Traefik network {network} must exist "
            f"(podman network create {network}), and Traefik must use it"
        )
        return scalar(network)

    def hostname(self, role: Role, svc: Mapping[str, Any]) -> str | None:
        labels = {k: scalar(v) for k, v in (svc.get("labels") or {}).items()}
        rules = [
            v
            for k, v in sorted(labels.items())
            if re.fullmatch(r"traefik\.http\.routers\.[^.]+\.rule", k)
        ]
        for rule in rules:
            hosts: list[str] = _HOST_RULE.findall(rule)
            if hosts:
                if len(hosts) > 1 or _HOST_RULE.sub("", rule).strip():
                    self.note(
                        role.key,
                        "labels",
                        f"Traefik rule {rule!r}: the managed stack routes Host(`{hosts[0]}`) only",
                    )
                return hosts[0]
        self.note(
            role.key,
            "labels",
            "no Traefik Host() rule; the managed default host name is kept",
        )
        return None

    def unmodelled(self, role: Role, svc: Mapping[str, Any]) -> None:
        """Notes for what the managed units do their own way."""
        expected = set(_traefik_labels(role.name, role.port)) if role.key in (
            "open_webui", "litellm") else set()  # fmt: skip
        for key, value in sorted((svc.get("labels") or {}).items()):
            if not key.startswith("traefik.") or role.key not in ("open_webui", "litellm"):
                self.note(role.key, f"labels.{key}", "not carried")
                continue
            if key in ("traefik.enable", "traefik.docker.network") or key.endswith(".rule"):
                continue
            if f"{key}={scalar(value)}" not in expected:
                self.note(
                    role.key,
                    f"labels.{key}",
                    "not carried: the managed stack writes its own Traefik labels "
                    f"(router {role.name}-secure on entrypoint websecure, port {role.port})",
                )
        if role.key == "litellm" and svc.get("command"):
            try:
                words = command_words(svc["command"])
            except ValueError:
                words = []
            if words != ["--config", LITELLM_CONFIG_DEFAULT, "--port", "4000"]:
                self.note(
                    "litellm",
                    "command",
                    "not carried: the managed stack runs LiteLLM with --config "
                    f"{LITELLM_CONFIG_DEFAULT} --port 4000",
                )
        for key in ("entrypoint", "healthcheck", "user", "cap_add", "privileged", "read_only"):
            if (
                key == "healthcheck"
                and role.key == "postgres"
                and "pg_isready" in str(svc.get(key))
            ):
                continue  # the managed unit's check is pg_isready with the same names
            if svc.get(key):
                self.note(role.key, key, "not carried: the managed unit has its own settings")
        if role.key != "litellm" and svc.get("command"):
            self.note(role.key, "command", "not carried: the managed unit runs the image's own")
        if role.key != "ollama" and svc.get("devices"):
            self.note(role.key, "devices", "not carried")


def _traefik_labels(name: str, port: int) -> list[str]:
    """The labels agent/stack/render.py writes besides enable, network and rule."""
    router = f"traefik.http.routers.{name}-secure"
    return [
        f"{router}.entrypoints=websecure",
        f"{router}.service={name}",
        f"traefik.http.services.{name}.loadbalancer.server.port={port}",
    ]


def stack_config(project: Project, report: Report) -> StackImport:
    """Recognise the seed's stack and build its `stack:` config; notes and to-dos go to
    `report` (secrets as to-dos, never values)."""
    services, why = recognise(project)
    if not services:
        return StackImport(False, why)
    builder = _Builder(project, services, report)
    data = builder.build()
    return StackImport(True, "", services, data, builder.todo, builder.values)


def _remote(port: str) -> bool:
    """A published `address:port` other hosts may reach (not loopback)."""
    address = published_address(port)
    return address is not None and not address.is_loopback
