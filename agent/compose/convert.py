"""A loaded compose project -> quadlet units (`.container`, `.network`, `.volume`).

Naming, chosen so units from several projects can share /etc/containers/systemd:
- each service becomes `<project>-<service>.container` (so `<project>-<service>.service`,
  which is how depends_on reads): projects sharing a folder never replace each other's
  units; the container is named `container_name` or `<project>-<service>`; a `build:`
  adds `<project>-<service>.build` (Podman 5.2);
- the implicit `default` network becomes `<project>.network`, other project networks
  `<project>-<name>.network`; the Podman network is named as Compose names it
  (`<project>_<name>`, or its `name:`), so service names resolve through Podman's DNS;
- named volumes become `<project>-<name>.volume`, Podman volume `<project>_<name>`
  (or its `name:`), which keeps the data of a project podman-compose ran before.
External networks and volumes are referenced by name; nothing is created for them.
Referencing `x.network`/`x.volume` makes quadlet order and require their units.

The names were checked when loading (Compose's rule); a unit file name must also fit a
file system's 255 bytes with room for the writer's temporary name (MAX_FILE_NAME).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..quadlet import PodmanVersion, UnitFile, UnitValueError, first_version, supports
from .container import Plan, ServiceConverter, unit_header
from .errors import ComposeError, KeyPath
from .loader import Project
from .report import Report
from .values import scalar

MAX_FILE_NAME = 240  # bytes; NAME_MAX is 255 and the atomic writer adds a suffix


def check_file_name(name: str, file: Path, where: KeyPath) -> None:
    """A unit file name longer than a file system takes is an error naming the key."""
    if len(name.encode()) > MAX_FILE_NAME:
        raise ComposeError(
            file,
            where,
            f"the unit file name {name[:40]}... would be longer than {MAX_FILE_NAME} bytes; "
            "use a shorter name",
        )


def container_name(project: Project, service: str) -> str:
    name = project.services[service].get("container_name")
    try:
        return scalar(name) if name else f"{project.name}-{service}"
    except ValueError as exc:
        where = project.origin.get(service, project.files[0])
        raise ComposeError(where, ("services", service, "container_name"), str(exc)) from None


def plan(
    project: Project, target: PodmanVersion, external: Mapping[str, str] | None = None
) -> Plan:
    result = Plan(
        project=project,
        target=target,
        container_names={s: container_name(project, s) for s in project.services},
        external=dict(external or {}),
    )
    for svc in project.services.values():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if spec["condition"] == "service_healthy":
                result.needs_healthy.add(dep)
            elif spec["condition"] == "service_completed_successfully":
                result.needs_oneshot.add(dep)
    return result


def _used(project: Project) -> tuple[set[str], set[str]]:
    """Networks and named volumes the enabled services use."""
    networks: set[str] = set()
    volumes: set[str] = set()
    for svc in project.services.values():
        if svc.get("network_mode") is None:
            networks.update(svc.get("networks") or {"default": None})
        for vol in svc.get("volumes") or []:
            if vol.get("type") == "volume" and vol.get("source"):
                volumes.add(vol["source"])
    return networks, volumes


class _Resources:
    def __init__(self, project: Project, target: PodmanVersion, report: Report) -> None:
        self.project = project
        self.target = target
        self.report = report

    def put(
        self,
        unit: UnitFile,
        section: str,
        key: str,
        value: str | list[str],
        subject: str,
        compose_key: str,
    ) -> bool:
        if not supports(section, key, self.target):
            self.report.lose(
                subject,
                compose_key,
                f"needs {key}= (Podman "
                f"{first_version(section, key)}); the target is Podman "
                f"{self.target}",
            )
            return False
        try:
            unit.add(section, key, value)
        except UnitValueError as exc:
            self.report.lose(subject, compose_key, f"{key}=: {exc}")
            return False
        return True

    def network(self, name: str, plan_: Plan) -> UnitFile | None:
        spec: dict[str, Any] = self.project.networks.get(name) or {}
        subject = f"networks.{name}"
        podman_name = scalar(spec.get("name") or f"{self.project.name}_{name}")
        if spec.get("external"):
            plan_.network_units[name] = scalar(spec.get("name") or name)
            self.report.act(
                f"network {plan_.network_units[name]} is external: it must exist "
                f"(podman network create {plan_.network_units[name]})"
            )
            return None
        stem = self.project.name if name == "default" else f"{self.project.name}-{name}"
        check_file_name(f"{stem}.network", self.project.files[0], ("networks", name))
        unit = UnitFile(f"{stem}.network", unit_header(self.project, f"network {name!r}"))
        plan_.network_units[name] = unit.name
        what = "the project's default network" if name == "default" else f"network {name}"
        unit.add("Unit", "Description", f"{what} ({self.project.name} compose project)")
        unit.ensure_section("Network")
        if supports("Network", "NetworkName", self.target):
            unit.add("Network", "NetworkName", podman_name)
        else:
            self.report.note(
                subject,
                "name",
                f"Podman {self.target} names it systemd-{stem} "
                f"(NetworkName= needs Podman 4.7), not {podman_name}",
            )
        driver = spec.get("driver")
        if driver in ("overlay", "host", "none") or (driver and driver.startswith("cloudstore")):
            self.report.lose(subject, "driver", f"Podman has no {driver!r} network driver")
        elif driver and driver != "bridge":
            self.put(unit, "Network", "Driver", driver, subject, "driver")
        for key in sorted(spec.get("driver_opts") or {}):
            self.put(
                unit,
                "Network",
                "Options",
                [f"{key}={spec['driver_opts'][key]}"],
                subject,
                f"driver_opts.{key}",
            )
        ipam = spec.get("ipam") or {}
        if ipam.get("driver") not in (None, "default"):
            self.put(unit, "Network", "IPAMDriver", scalar(ipam["driver"]), subject, "ipam.driver")
        configs = ipam.get("config") or []
        skip: set[str] = set()
        for field in ("gateway", "ip_range"):
            missing_before = False
            for config in configs:
                if not config.get(field):
                    missing_before = True
                elif missing_before:
                    skip.add(field)
                    self.report.lose(
                        subject,
                        f"ipam.config.{field}",
                        "quadlet pairs gateways "
                        "and ranges with subnets by position, so every subnet "
                        f"before one with a {field} needs one too",
                    )
                    break
        for i, config in enumerate(configs):
            for field, key in (
                ("subnet", "Subnet"),
                ("gateway", "Gateway"),
                ("ip_range", "IPRange"),
            ):
                if config.get(field) and field not in skip:
                    self.put(
                        unit,
                        "Network",
                        key,
                        scalar(config[field]),
                        subject,
                        f"ipam.config[{i}].{field}",
                    )
            if config.get("aux_addresses"):
                self.report.lose(
                    subject,
                    f"ipam.config[{i}].aux_addresses",
                    "Podman cannot reserve auxiliary addresses",
                )
        if ipam.get("options"):
            self.report.lose(subject, "ipam.options", "IPAM driver options are not supported")
        if spec.get("internal"):
            unit.add("Network", "Internal", "true")
        if spec.get("enable_ipv6"):
            unit.add("Network", "IPv6", "true")
        if spec.get("enable_ipv4") is False:
            self.report.lose(subject, "enable_ipv4", "Podman networks always have IPv4")
        if spec.get("attachable"):
            self.report.note(subject, "attachable", "only used by Docker Swarm")
        for key in sorted(spec.get("labels") or {}):
            self.put(
                unit, "Network", "Label", [f"{key}={spec['labels'][key]}"], subject, f"labels.{key}"
            )
        return unit

    def volume(self, name: str, plan_: Plan) -> UnitFile | None:
        spec: dict[str, Any] = self.project.volumes.get(name) or {}
        subject = f"volumes.{name}"
        if spec.get("external"):
            plan_.volume_units[name] = scalar(spec.get("name") or name)
            self.report.act(
                f"volume {plan_.volume_units[name]} is external: it must exist "
                f"(podman volume create {plan_.volume_units[name]})"
            )
            return None
        stem = f"{self.project.name}-{name}"
        check_file_name(f"{stem}.volume", self.project.files[0], ("volumes", name))
        unit = UnitFile(f"{stem}.volume", unit_header(self.project, f"volume {name!r}"))
        plan_.volume_units[name] = unit.name
        unit.add("Unit", "Description", f"volume {name} ({self.project.name} compose project)")
        unit.ensure_section("Volume")
        podman_name = scalar(spec.get("name") or f"{self.project.name}_{name}")
        if supports("Volume", "VolumeName", self.target):
            unit.add("Volume", "VolumeName", podman_name)
        else:
            self.report.note(
                subject,
                "name",
                f"Podman {self.target} names it systemd-{stem} "
                f"(VolumeName= needs Podman 4.7), not {podman_name}",
            )
        driver = spec.get("driver")
        if driver and driver != "local":
            self.put(unit, "Volume", "Driver", scalar(driver), subject, "driver")
        opts = dict(spec.get("driver_opts") or {})
        if opts and driver in (None, "local"):
            has_device = "device" in opts
            for field, key in (("type", "Type"), ("device", "Device"), ("o", "Options")):
                if field not in opts:
                    continue
                value = scalar(opts.pop(field))
                if not has_device:
                    why = "quadlet needs 'device' with 'type' and 'o'"
                    self.report.lose(subject, f"driver_opts.{field}", why)
                    continue
                self.put(unit, "Volume", key, value, subject, f"driver_opts.{field}")
        for key in sorted(opts):
            if supports("Volume", "PodmanArgs", self.target):
                self.put(
                    unit,
                    "Volume",
                    "PodmanArgs",
                    [f"--opt={key}={opts[key]}"],
                    subject,
                    f"driver_opts.{key}",
                )
            else:
                self.report.lose(subject, f"driver_opts.{key}", "needs PodmanArgs= (Podman 4.6)")
        for key in sorted(spec.get("labels") or {}):
            self.put(
                unit, "Volume", "Label", [f"{key}={spec['labels'][key]}"], subject, f"labels.{key}"
            )
        return unit


def convert(
    project: Project,
    target: PodmanVersion,
    report: Report,
    external: Mapping[str, str] | None = None,
) -> list[UnitFile]:
    """Every unit of the project, sorted by file name; findings go to `report`.
    `external`: services depended on that the project does not define -> their unit."""
    the_plan = plan(project, target, external)
    resources = _Resources(project, target, report)
    units: list[UnitFile] = []
    networks, volumes = _used(project)
    makers = (("networks", networks, resources.network), ("volumes", volumes, resources.volume))
    for kind, names, make in makers:
        for name in sorted(names):
            try:
                unit = make(name, the_plan)
            except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
                where = project.files[0]
                raise ComposeError(where, (kind, name), f"invalid value: {exc}") from None
            if unit:
                units.append(unit)
    for kind, declared, used in (
        ("networks", project.networks, networks),
        ("volumes", project.volumes, volumes),
    ):
        for name in sorted(set(declared) - used):
            report.note(f"{kind}.{name}", kind, "not used by any converted service; not created")
    for kind in ("secrets", "configs"):
        used_refs = {r["source"] for s in project.services.values() for r in s.get(kind) or []}
        for name in sorted(set(getattr(project, kind)) - used_refs):
            report.note(f"{kind}.{name}", kind, "not used by any converted service")
    for name in sorted(project.services):
        where = project.origin.get(name, project.files[0])
        check_file_name(f"{the_plan.unit_stem(name)}.container", where, ("services", name))
        converter = ServiceConverter(the_plan, name, report)
        unit = converter.convert()
        if not converter.refused:
            units.append(unit)
            units.extend(converter.extra_units)
    refused = {n for n in project.services if f"{the_plan.unit_stem(n)}.container"
               not in {u.name for u in units}}  # fmt: skip
    for name in sorted(project.services):
        for dep in sorted(set(project.services[name].get("depends_on") or {}) & refused):
            report.lose(name, f"depends_on.{dep}", f"{dep} gets no unit (its build), so this "
                        "one cannot start until you create it")  # fmt: skip
    for unit in units:  # a unit quadlet would skip must never be written
        for problem in unit.validate(target):
            report.lose(unit.name, problem.key, str(problem))
    return sorted(units, key=lambda u: u.name)
