"""The quadlet keys each Podman release accepts, per section, as data.

Why this exists: quadlet skips a whole unit (and everything that depends on it) when it
meets a key its Podman release does not know, so a writer of quadlet files must know
its target version. The table below is transcribed from the allowed-keys lists in
Podman's quadlet source at every release tag from v4.4 to v5.8
(/work/shared/reference/quadlet-keys-by-version.md); each row lists the keys first
accepted in that release. Keys are never removed, so the keys a release accepts are the
union of every row up to it.

Only the quadlet sections are listed: [Unit], [Service] and [Install] go to systemd
untouched and are not checked by quadlet.
"""

from __future__ import annotations

import re
from functools import cache
from typing import NamedTuple


class PodmanVersion(NamedTuple):
    """A Podman release as (major, minor); patch releases never add quadlet keys."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> PodmanVersion:
        """Read `5`, `5.0`, `4.9.3` or `v5.4`; ValueError for anything else."""
        match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.\d+)?", text.strip())
        if not match:
            raise ValueError(f"not a Podman version: {text!r} (expected e.g. 5.0 or 4.9)")
        return cls(int(match.group(1)), int(match.group(2) or 0))

    @classmethod
    def from_podman_output(cls, text: str) -> PodmanVersion | None:
        """The version in `podman --version` output (`podman version 5.4.2`), if any."""
        match = re.search(r"\bversion\s+v?(\d+)\.(\d+)", text)
        return cls(int(match.group(1)), int(match.group(2))) if match else None

    @property
    def released(self) -> bool:
        return self < UNRELEASED

    def __str__(self) -> str:
        return "main (unreleased)" if not self.released else f"{self.major}.{self.minor}"


# Keys present on Podman's main branch but in no release at the time of the snapshot.
UNRELEASED = PodmanVersion(9999, 0)

# The oldest release that has quadlet at all.
FIRST_QUADLET = PodmanVersion(4, 4)

_V = PodmanVersion

# section -> ((first release, keys added in it), ...), oldest first.
KEY_TABLE: dict[str, tuple[tuple[PodmanVersion, str], ...]] = {
    "Container": (
        (_V(4, 4), "AddCapability AddDevice Annotation ContainerName DropCapability "
            "Environment EnvironmentFile EnvironmentHost Exec ExposeHostPort Group "
            "Image Label Network NoNewPrivileges Notify PodmanArgs PublishPort "
            "ReadOnly RemapGid RemapUid RemapUidSize RemapUsers RunInit "
            "SeccompProfile Timezone User VolatileTmp Volume"),
        (_V(4, 5), "HealthCmd HealthInterval HealthOnFailure HealthRetries "
            "HealthStartPeriod HealthStartupCmd HealthStartupInterval "
            "HealthStartupRetries HealthStartupSuccess HealthStartupTimeout "
            "HealthTimeout IP IP6 LogDriver Mount Rootfs Secret "
            "SecurityLabelDisable SecurityLabelFileType SecurityLabelLevel "
            "SecurityLabelType Tmpfs UserNS"),
        (_V(4, 6), "AutoUpdate HostName Mask Pull SecurityLabelNested Sysctl Unmask "
            "WorkingDir"),
        (_V(4, 7), "DNS DNSOption DNSSearch PidsLimit ShmSize Ulimit"),
        (_V(4, 8), "ContainersConfModule GIDMap GlobalArgs ReadOnlyTmpfs SubGIDMap "
            "SubUIDMap UIDMap"),
        (_V(5, 0), "Entrypoint Pod StopTimeout"),
        (_V(5, 1), "GroupAdd"),
        (_V(5, 2), "LogOpt NetworkAlias StopSignal"),
        (_V(5, 3), "AddHost CgroupsMode HealthLogDestination HealthMaxLogCount "
            "HealthMaxLogSize ServiceName StartWithPod"),
        (_V(5, 5), "Memory ReloadCmd ReloadSignal Retry RetryDelay"),
        (_V(5, 7), "HttpProxy"),
        (_V(5, 8), "AppArmor"),
    ),
    "Volume": (
        (_V(4, 4), "Copy Device Group Label Options Type User"),
        (_V(4, 6), "PodmanArgs"),
        (_V(4, 7), "VolumeName"),
        (_V(4, 8), "ContainersConfModule Driver GlobalArgs Image"),
        (_V(5, 3), "ServiceName"),
        (UNRELEASED, "GID UID"),
    ),
    "Network": (
        (_V(4, 4), "DisableDNS Driver Gateway IPAMDriver IPRange IPv6 Internal Label "
            "Options Subnet"),
        (_V(4, 6), "PodmanArgs"),
        (_V(4, 7), "DNS NetworkName"),
        (_V(4, 8), "ContainersConfModule GlobalArgs"),
        (_V(5, 3), "ServiceName"),
        (_V(5, 5), "NetworkDeleteOnStop"),
        (_V(5, 6), "InterfaceName"),
    ),
    "Pod": (
        (_V(5, 0), "ContainersConfModule GlobalArgs Network PodName PodmanArgs PublishPort "
            "Volume"),
        (_V(5, 2), "NetworkAlias"),
        (_V(5, 3), "AddHost DNS DNSOption DNSSearch GIDMap IP IP6 RemapGid RemapUid "
            "RemapUidSize RemapUsers ServiceName SubGIDMap SubUIDMap UIDMap UserNS"),
        (_V(5, 4), "ShmSize"),
        (_V(5, 5), "HostName"),
        (_V(5, 6), "ExitPolicy Label"),
        (_V(5, 7), "StopTimeout"),
    ),
    "Kube": (
        (_V(4, 4), "ConfigMap Network PublishPort RemapGid RemapUid RemapUidSize "
            "RemapUsers Yaml"),
        (_V(4, 5), "LogDriver UserNS"),
        (_V(4, 6), "ExitCodePropagation PodmanArgs"),
        (_V(4, 7), "AutoUpdate SetWorkingDirectory"),
        (_V(4, 8), "ContainersConfModule GlobalArgs KubeDownForce"),
        (_V(5, 2), "LogOpt"),
        (_V(5, 3), "ServiceName"),
    ),
    "Image": (
        (_V(4, 8), "AllTags Arch AuthFile CertDir ContainersConfModule Creds DecryptionKey "
            "GlobalArgs Image ImageTag OS PodmanArgs TLSVerify Variant"),
        (_V(5, 3), "ServiceName"),
        (_V(5, 5), "Retry RetryDelay"),
        (_V(5, 6), "Policy"),
    ),
    "Build": (
        (_V(5, 2), "Annotation Arch AuthFile ContainersConfModule DNS DNSOption DNSSearch "
            "Environment File ForceRM GlobalArgs GroupAdd ImageTag Label Network "
            "PodmanArgs Pull Secret SetWorkingDirectory TLSVerify Target Variant "
            "Volume"),
        (_V(5, 3), "ServiceName"),
        (_V(5, 5), "Retry RetryDelay"),
        (_V(5, 7), "BuildArg IgnoreFile"),
    ),
    "Artifact": (
        (_V(5, 7), "Artifact AuthFile CertDir ContainersConfModule Creds DecryptionKey "
            "GlobalArgs PodmanArgs Quiet Retry RetryDelay ServiceName TLSVerify"),
    ),
    "Quadlet": (
        (_V(5, 3), "DefaultDependencies"),
    ),
}  # fmt: skip

QUADLET_SECTIONS: frozenset[str] = frozenset(KEY_TABLE)

# The file extension quadlet reads for each unit type, and the section it must contain.
SECTION_FOR_SUFFIX: dict[str, str] = {
    ".container": "Container",
    ".volume": "Volume",
    ".network": "Network",
    ".pod": "Pod",
    ".kube": "Kube",
    ".image": "Image",
    ".build": "Build",
    ".artifact": "Artifact",
}


@cache
def _first_versions(section: str) -> dict[str, PodmanVersion]:
    rows = KEY_TABLE.get(section)
    if rows is None:
        raise KeyError(f"{section!r} is not a quadlet section; known: {sorted(KEY_TABLE)}")
    return {key: version for version, keys in rows for key in keys.split()}


def section_since(section: str) -> PodmanVersion:
    """The first release whose quadlet reads this section at all."""
    _first_versions(section)  # raises KeyError for an unknown section
    return KEY_TABLE[section][0][0]


def first_version(section: str, key: str) -> PodmanVersion | None:
    """The first release that accepts `key` in `section`, or None if no release does.

    `UNRELEASED` (str: "main (unreleased)") marks keys only on Podman's main branch.
    """
    return _first_versions(section).get(key)


@cache
def keys_for(section: str, version: PodmanVersion) -> frozenset[str]:
    """Every key `section` accepts in Podman `version` (empty before the section existed)."""
    return frozenset(k for k, since in _first_versions(section).items() if since <= version)


def supports(section: str, key: str, version: PodmanVersion) -> bool:
    """Whether Podman `version`'s quadlet accepts `key` in `section`."""
    since = first_version(section, key)
    return since is not None and since <= version


def releases() -> list[PodmanVersion]:
    """Every release that added a key somewhere, oldest first (the table's own versions)."""
    return sorted({v for rows in KEY_TABLE.values() for v, _ in rows if v.released})
