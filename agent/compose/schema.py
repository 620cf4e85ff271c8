"""The keys the compose specification defines, to tell a typo from an unsupported key.

An unknown key is an error (Compose refuses it too, and a typo must not pass silently);
a known key this importer cannot translate is a lossy item in the report instead.
Extension keys (`x-...`) are allowed at every level and ignored.
"""

from __future__ import annotations

TOP_LEVEL = frozenset(
    {
        "version",
        "name",
        "services",
        "networks",
        "volumes",
        "secrets",
        "configs",
        "include",
        "models",
    }
)

SERVICE = frozenset(
    {
        "annotations",
        "attach",
        "blkio_config",
        "build",
        "cap_add",
        "cap_drop",
        "cgroup",
        "cgroup_parent",
        "command",
        "configs",
        "container_name",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpu_shares",
        "cpus",
        "cpuset",
        "credential_spec",
        "depends_on",
        "deploy",
        "develop",
        "device_cgroup_rules",
        "devices",
        "dns",
        "dns_opt",
        "dns_search",
        "domainname",
        "driver_opts",
        "entrypoint",
        "env_file",
        "environment",
        "expose",
        "extends",
        "external_links",
        "extra_hosts",
        "gpus",
        "group_add",
        "healthcheck",
        "hostname",
        "image",
        "init",
        "ipc",
        "isolation",
        "labels",
        "label_file",
        "links",
        "logging",
        "mac_address",
        "mem_limit",
        "mem_reservation",
        "mem_swappiness",
        "memswap_limit",
        "models",
        "network_mode",
        "networks",
        "oom_kill_disable",
        "oom_score_adj",
        "pid",
        "pids_limit",
        "platform",
        "ports",
        "post_start",
        "pre_stop",
        "privileged",
        "profiles",
        "provider",
        "pull_policy",
        "read_only",
        "restart",
        "runtime",
        "scale",
        "secrets",
        "security_opt",
        "shm_size",
        "stdin_open",
        "stop_grace_period",
        "stop_signal",
        "storage_opt",
        "sysctls",
        "tmpfs",
        "tty",
        "ulimits",
        "use_api_socket",
        "user",
        "userns_mode",
        "uts",
        "volumes",
        "volumes_from",
        "working_dir",
    }
)

NETWORK = frozenset(
    {
        "driver",
        "driver_opts",
        "attachable",
        "enable_ipv4",
        "enable_ipv6",
        "external",
        "ipam",
        "internal",
        "labels",
        "name",
    }
)
VOLUME = frozenset({"driver", "driver_opts", "external", "labels", "name"})
SECRET = frozenset(
    {
        "file",
        "environment",
        "external",
        "name",
        "content",
        "labels",
        "driver",
        "driver_opts",
        "template_driver",
    }
)
CONFIG = SECRET

HEALTHCHECK = frozenset(
    {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
)
DEPLOY = frozenset(
    {
        "mode",
        "replicas",
        "labels",
        "placement",
        "resources",
        "restart_policy",
        "rollback_config",
        "update_config",
        "endpoint_mode",
    }
)
SERVICE_NETWORK = frozenset(
    {
        "aliases",
        "ipv4_address",
        "ipv6_address",
        "link_local_ips",
        "mac_address",
        "priority",
        "gw_priority",
        "driver_opts",
        "interface_name",
    }
)
DEPENDS_ON = frozenset({"condition", "required", "restart"})
CONDITIONS = frozenset({"service_started", "service_healthy", "service_completed_successfully"})


def unknown(keys: object, known: frozenset[str]) -> list[str]:
    """Keys of a mapping that are neither known nor extensions, sorted."""
    if not isinstance(keys, dict):
        return []
    return sorted(str(k) for k in keys if str(k) not in known and not str(k).startswith("x-"))
