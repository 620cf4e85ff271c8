"""The Ansible role and playbook (deploy/ansible): ansible-lint, the playbook's syntax, and
the role run by real Ansible against local hosts named like a fleet's.

agent.yaml is rendered by the role's own tasks (its template, with its `validate:` running
the real `aistack check-config`) for a front host and GPU hosts, into tmp_path, and read
back with the agent's config loader. `aistack up` and `aistack status` are the role's own
tasks too, run against a stand-in `aistack` that answers with the agent's report shapes,
so what counts as a change and what fails the play is checked here. Installing the deb
and starting the agent need root and systemd: a whole run, twice for idempotence, is for
the systemd testbed (deploy/ansible/README.md, "How it is tested").
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import __version__
from agent.config import AgentConfig, load_config

from .conftest import PYTHON, REPO

ANSIBLE = REPO / "deploy" / "ansible"
ROLES = ANSIBLE / "roles"
# Generous: a hang guard only (ansible-lint's first run builds its cache).
TIMEOUT_S = 600
MODELS = ["llama3.2:3b", "qwen2.5:7b"]
# The inventory's GPU hosts and the URL each front host's LiteLLM must get for it.
GPU_HOSTS = {
    "gpu1": ("aistack_ollama_publish=10.0.0.21", "http://10.0.0.21:11434"),
    "gpu2": ("ansible_host=gpu2.lan aistack_ollama_publish=0.0.0.0", "http://gpu2.lan:11434"),
    "gpu3": (
        "ansible_host=fd00::3 aistack_ollama_publish=fd00::3 aistack_ollama_port=11500",
        "http://[fd00::3]:11500",
    ),
    "gpu4": ("aistack_ollama_url=http://ollama-4.lan:11434", "http://ollama-4.lan:11434"),
}
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)  # fmt: skip


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is required (make deps installs it)"
    return path


@dataclass(frozen=True)
class Run:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: host -> ok, changed, unreachable, failed."""
        return {
            m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
            for m in RECAP.finditer(self.output)
        }


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "ansible-home"
    home.mkdir(exist_ok=True)
    config = tmp_path / "ansible.cfg"  # this host's /etc/ansible/ansible.cfg left out
    config.write_text("[defaults]\n")
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
    }


def _playbook(tmp_path: Path, inventory: str, play: list[dict[str, Any]], *extra: str) -> Run:
    _need("ansible-playbook")
    (tmp_path / "inventory.ini").write_text(inventory)
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    proc = subprocess.run(
        ["ansible-playbook", "-i", "inventory.ini", "play.yml", *extra],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout + proc.stderr)


# Every host of a test inventory is this machine, reached without SSH.
LOCAL = """
[all:vars]
ansible_connection=local
ansible_python_interpreter={{ ansible_playbook_python }}
"""


def _render_play(out: Path, hosts: str, **variables: Any) -> list[dict[str, Any]]:
    """The role's config tasks (backends, template, validate) writing into `out`."""
    return [
        {
            "name": "Render agent.yaml with the aistack role",
            "hosts": hosts,
            "gather_facts": False,
            "vars": {
                "aistack_config_path": f"{out}/{{{{ inventory_hostname }}}}.yaml",
                "aistack_config_owner": "{{ lookup('pipe', 'id -un') }}",
                "aistack_config_group": "{{ lookup('pipe', 'id -gn') }}",
                "aistack_check_config": f"{shlex.quote(PYTHON)} -m agent.cli check-config %s",
                "aistack_service": False,
                "aistack_ollama_models": MODELS,
                **variables,
            },
            "tasks": [
                {
                    "name": "Write agent.yaml",
                    "ansible.builtin.include_role": {"name": "aistack", "tasks_from": "config"},
                }
            ],
        }
    ]


FLEET = (
    "[front]\nfront1\n\n[gpu]\n"
    + "".join(f"{host} {hostvars}\n" for host, (hostvars, _) in GPU_HOSTS.items())
    + LOCAL
)


def test_ansible_lint_is_clean_on_the_production_profile() -> None:
    lint = _need("ansible-lint")
    # No path argument: ansible-lint 6.13 (Debian 12) takes "." for a role and lints two
    # files; without one it lints what git lists under the working directory.
    proc = subprocess.run(
        [lint, "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ansible-lint:\n{output}"
    # It looked at every YAML file of the playbook and the role, not at a few of them.
    counts = [int(n) for n in re.findall(r"(?:on|in) (\d+) files", output)]
    yaml_files = [p for p in ANSIBLE.rglob("*.yml") if ".cache" not in p.parts]
    assert counts and counts[-1] >= len(yaml_files), output


def test_the_playbook_passes_ansibles_syntax_check() -> None:
    playbook = _need("ansible-playbook")
    proc = subprocess.run(
        [playbook, "--syntax-check", "-i", "inventory.example.ini", "site.yml"],
        cwd=ANSIBLE, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


def test_the_example_names_the_package_make_deb_builds() -> None:
    example = yaml.safe_load((ANSIBLE / "group_vars" / "all.yml").read_text())
    assert example["aistack_deb"].endswith(f"/dist/aistack_{__version__}-1_all.deb")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    """The role's agent.yaml for one front host and four GPU hosts, written twice."""
    tmp_path = tmp_path_factory.mktemp("fleet")
    out = tmp_path / "out"
    out.mkdir()
    play = _render_play(out, "front:gpu")
    first = _playbook(tmp_path, FLEET, play)
    second = _playbook(tmp_path, FLEET, play)
    return out, first, second


def _config(out: Path, host: str) -> AgentConfig:
    return load_config(out / f"{host}.yaml")


def _enabled(config: AgentConfig) -> set[str]:
    names = ("ollama", "open_webui", "litellm", "postgres")
    return {name for name in names if getattr(config.stack, name).enabled}


def test_the_front_host_gets_the_gpu_hosts_as_backends(fleet: tuple[Path, Run, Run]) -> None:
    out, first, _ = fleet
    assert first.rc == 0, first.output
    config = _config(out, "front1")
    assert _enabled(config) == {"open_webui", "litellm", "postgres"}
    assert list(config.stack.litellm.ollama_backends) == [url for _, url in GPU_HOSTS.values()]
    assert list(config.stack.ollama.models) == MODELS  # what LiteLLM routes to them
    assert config.stack.ollama.allow_remote is False
    # No local Ollama: Open WebUI reaches the models through LiteLLM only (docs/fleet.md).
    assert dict(config.stack.open_webui.env) == {"ENABLE_OLLAMA_API": "false"}
    mode = (out / "front1.yaml").stat().st_mode
    assert stat.S_IMODE(mode) == 0o644


def test_a_gpu_host_runs_only_ollama_published_where_the_front_looks(
    fleet: tuple[Path, Run, Run],
) -> None:
    out, first, _ = fleet
    assert first.rc == 0, first.output
    for host in GPU_HOSTS:
        config = _config(out, host)
        assert _enabled(config) == {"ollama"}, host
        assert list(config.stack.ollama.models) == MODELS, host
        assert not config.stack.litellm.ollama_backends, host
    gpu1 = _config(out, "gpu1")  # published beside loopback, where its own agent asks
    assert list(gpu1.stack.ollama.ports) == ["127.0.0.1:11434", "10.0.0.21:11434"]
    assert gpu1.stack.ollama.allow_remote is True
    assert gpu1.gpu.ollama_url == AgentConfig().gpu.ollama_url
    gpu2 = _config(out, "gpu2")  # 0.0.0.0 covers loopback
    assert list(gpu2.stack.ollama.ports) == ["0.0.0.0:11434"]
    assert gpu2.stack.ollama.allow_remote is True
    assert gpu2.gpu.ollama_url == AgentConfig().gpu.ollama_url
    gpu3 = _config(out, "gpu3")
    assert list(gpu3.stack.ollama.ports) == ["127.0.0.1:11500", "[fd00::3]:11500"]
    assert gpu3.gpu.ollama_url == "http://127.0.0.1:11500"
    gpu4 = _config(out, "gpu4")  # not published here (its URL is someone else's business)
    assert list(gpu4.stack.ollama.ports) == list(AgentConfig().stack.ollama.ports)
    assert gpu4.stack.ollama.allow_remote is False


def test_writing_agent_yaml_again_changes_nothing(fleet: tuple[Path, Run, Run]) -> None:
    _, first, second = fleet
    assert second.rc == 0, second.output
    hosts = {"front1", *GPU_HOSTS}
    assert {h: r["changed"] for h, r in first.recap().items()} == dict.fromkeys(hosts, 1)
    assert {h: r["changed"] for h, r in second.recap().items()} == dict.fromkeys(hosts, 0)


def test_a_lone_front_host_runs_the_whole_stack_and_takes_extra_keys(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    extra = {
        "backups": {"schedule": "0 4 * * *"},
        "stack": {"open_webui": {"ports": ["0.0.0.0:8080"]}},
    }
    inventory = "[front]\nbox\n" + LOCAL
    run = _playbook(tmp_path, inventory, _render_play(out, "front", aistack_config_extra=extra))
    assert run.rc == 0, run.output
    config = _config(out, "box")
    assert _enabled(config) == {"ollama", "open_webui", "litellm", "postgres"}
    assert not config.stack.litellm.ollama_backends  # the local Ollama only
    assert not config.stack.open_webui.env
    assert config.backups.schedule == "0 4 * * *"
    assert list(config.stack.open_webui.ports) == ["0.0.0.0:8080"]
    assert config.stack.open_webui.enabled  # merged, not replaced


def test_a_front_that_is_a_gpu_host_too_is_not_its_own_backend(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inventory = textwrap.dedent("""
        [front]
        big

        [gpu]
        big aistack_ollama_publish=10.0.0.5
        gpu9 aistack_ollama_publish=10.0.0.9
    """)
    run = _playbook(tmp_path, inventory + LOCAL, _render_play(out, "front:gpu"))
    assert run.rc == 0, run.output
    big = _config(out, "big")
    assert _enabled(big) == {"ollama", "open_webui", "litellm", "postgres"}
    assert list(big.stack.litellm.ollama_backends) == ["http://10.0.0.9:11434"]
    assert not big.stack.open_webui.env  # its own Ollama serves Open WebUI too
    assert _enabled(_config(out, "gpu9")) == {"ollama"}


def test_an_invalid_agent_yaml_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "box.yaml").write_text("# the running config\n")
    extra = {"api": {"prot": 9300}}
    inventory = "[front]\nbox\n" + LOCAL
    run = _playbook(tmp_path, inventory, _render_play(out, "front", aistack_config_extra=extra))
    assert run.rc != 0
    assert "api.prot: unknown key" in run.output  # check-config's own words
    assert (out / "box.yaml").read_text() == "# the running config\n"


def test_a_secret_name_the_agent_does_not_read_is_refused(tmp_path: Path) -> None:
    play = [
        {
            "name": "Check the role's variables",
            "hosts": "front",
            "gather_facts": False,
            "vars": {
                "aistack_deb": "/nonexistent/aistack.deb",
                "aistack_secrets": {"litellm-master-key": "sk-x", "OPENAI_KEY": "sk-y"},
                "aistack_litellm_provider_keys": ["OPENAI_API_KEY"],
            },
            "tasks": [
                {
                    "name": "Check",
                    "ansible.builtin.include_role": {"name": "aistack", "tasks_from": "check"},
                }
            ],
        }
    ]
    run = _playbook(tmp_path, "[front]\nbox\n" + LOCAL, play)
    assert run.rc != 0
    assert "not OPENAI_KEY" in run.output
    assert "sk-x" not in run.output and "sk-y" not in run.output


FAKE_AISTACK = """\
#!/bin/sh
# A stand-in for the aistack CLI: answers `up` and `status` from files beside it.
here=$(dirname "$0")
case "$1" in
    up) echo "applying ..." >&2; cat "$here/up.json"; exit "$(cat "$here/up.rc")" ;;
    status) cat "$here/status.json"; exit "$(cat "$here/status.rc")" ;;
esac
exit 2
"""
NOTHING = {
    "ok": True, "written": [], "removed": [], "started": [], "restarted": [], "stopped": [],
    "unchanged": ["postgres", "litellm", "open-webui"], "failed": {}, "problems": [],
    "warnings": [], "purged_volumes": [], "pulled": [], "seconds": 0.4,
}  # fmt: skip


def _status(state: str) -> dict[str, Any]:
    return {"state": state, "state_reasons": [] if state == "ok" else ["probes: litellm down"]}


OK, DEGRADED, FAILED = _status("ok"), _status("degraded"), _status("failed")
REWRITTEN = {**NOTHING, "written": ["/etc/containers/systemd/aistack/ollama.container"],
             "restarted": ["ollama"]}  # fmt: skip
UP_FAILED = {**NOTHING, "ok": False, "failed": {"litellm": "start failed"}}
UP_REFUSED = {"error": {"message": "the config cannot be applied", "problems": ["x"]}}


@pytest.mark.parametrize(
    ("up", "up_rc", "status", "status_rc", "changed", "failed"),
    [
        pytest.param(NOTHING, 0, OK, 0, 0, 0, id="unchanged"),  # an unchanged fleet's 2nd run
        pytest.param({**NOTHING, "started": ["ollama"]}, 0, OK, 0, 1, 0, id="started"),
        pytest.param(REWRITTEN, 0, OK, 0, 1, 0, id="rewritten"),
        pytest.param({**NOTHING, "pulled": ["qwen2.5:7b"]}, 0, OK, 0, 1, 0, id="pulled"),
        pytest.param(UP_FAILED, 1, OK, 0, 0, 1, id="up-failed"),
        pytest.param(UP_REFUSED, 65, OK, 0, 0, 1, id="up-refused"),
        pytest.param(NOTHING, 0, DEGRADED, 1, 0, 1, id="status-degraded"),
        pytest.param(NOTHING, 0, FAILED, 1, 0, 1, id="status-failed"),
    ],
)
def test_aistack_up_counts_as_a_change_only_when_the_agent_changed_something(
    tmp_path: Path,
    up: dict[str, Any],
    up_rc: int,
    status: dict[str, Any],
    status_rc: int,
    changed: int,
    failed: int,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aistack"
    fake.write_text(FAKE_AISTACK)
    fake.chmod(0o755)
    (bin_dir / "up.json").write_text(json.dumps(up, indent=2))
    (bin_dir / "up.rc").write_text(str(up_rc))
    (bin_dir / "status.json").write_text(json.dumps(status, indent=2))
    (bin_dir / "status.rc").write_text(str(status_rc))
    play = [
        {
            "name": "Apply through the aistack role",
            "hosts": "front",
            "gather_facts": False,
            "environment": {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
            "vars": {"aistack_status_retries": 1, "aistack_status_delay": 0},
            "tasks": [
                {
                    "name": "Apply",
                    "ansible.builtin.include_role": {"name": "aistack", "tasks_from": "up"},
                }
            ],
        }
    ]
    run = _playbook(tmp_path, "[front]\nbox\n" + LOCAL, play)
    recap = run.recap()["box"]
    assert (recap["changed"], recap["failed"]) == (changed, failed), run.output
    assert (run.rc == 0) == (failed == 0), run.output
