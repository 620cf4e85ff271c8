"""A fleet over a real network (issue #20): a front and two GPU hosts, three guests on a
private bridge (tests/e2e/testbed.py Bridge: a network namespace of the test's own, no
route anywhere else), rolled out by the real Ansible playbook (deploy/ansible) over SSH
from the bridge's namespace.

What it shows: the playbook brings up all three hosts and a second run changes nothing;
chat completions through the front's real LiteLLM proxy are served by both GPU hosts'
Ollamas (each stand-in answers with its host's name); kill -9 of one GPU host's Ollama
leaves every request answered by the other (LiteLLM's router, as the agent renders it)
while that host's systemd brings it back and its agent sees it healthy, and the front's
/status shows that backend down (the front degraded) and then up again, LiteLLM sending
it requests again; a Prometheus on the front
scrapes all three agents (the GPU hosts' APIs opened to the bridge with api.allow_remote).

Only loopback and the bridge's addresses (10.77.0.0/24) are ever a target.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import testbed
from tests.e2e.gauntlet import healthy, main_pid, status
from tests.e2e.test_prometheus import binary, get_json
from tests.e2e.testbed import Bridge, Guest

pytestmark = pytest.mark.e2e

PLAYBOOK = testbed.REPO_ROOT / "deploy" / "ansible" / "site.yml"
MODEL = "llama3.2:1b"
HOSTS = {"front1": 10, "gpu1": 11, "gpu2": 12}  # host part of each address on the bridge
FRONT, GPUS = "front1", ("gpu1", "gpu2")
LITELLM = "http://127.0.0.1:4000"
PROM = "http://127.0.0.1:9090"
# The front watches its backends every 2 s (default 15 s), so an outage is seen soon.
FRONT_EXTRA = {"watch": {"interval": "2s", "timeout": "1s"}}
# A GPU host's agent API on every address (the front's Prometheus scrapes it).
GPU_API = {"api": {"listen": "0.0.0.0", "allow_remote": True}}
# After the kill, systemd waits this long before it starts Ollama again (a drop-in on that
# host only; the unit's own 100 ms would have it back within the front's watch interval).
OUTAGE_DROPIN = "[Service]\nRestartSec=30s\nRestartSteps=0\n"
# Requests sent while gpu1 is down: enough that a request failing on it shows up.
OUTAGE_REQUESTS = 30
DROPIN_PATH = "/etc/systemd/system/ollama.service.d/e2e-fleet-outage.conf"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def reply_of(host: str) -> str:
    """What the Ollama stand-in on host answers every completion with."""
    return f"Hello from {host}."


@dataclass
class Fleet:
    """The three guests, their network and what the playbook needs, shared by the tests
    (booting and rolling out once costs most of the module's time)."""

    bridge: Bridge
    guests: dict[str, Guest]
    addresses: dict[str, str]
    workdir: Path
    deb: Path
    images: dict[str, str]
    first_run: subprocess.CompletedProcess[str]

    @property
    def front(self) -> Guest:
        return self.guests[FRONT]

    def backend(self, host: str) -> str:
        return f"http://{self.addresses[host]}:11434"

    def playbook(self) -> subprocess.CompletedProcess[str]:
        """ansible-playbook on the bridge's network namespace, over SSH to the guests."""
        extra = {
            "aistack_deb": str(self.deb),
            "aistack_packages": [],  # in the rootfs already; the guests have no mirror
            "aistack_ollama_image": self.images["ollama"],
            "aistack_open_webui_image": self.images["open-webui"],
            "aistack_litellm_image": self.images["litellm"],
            "aistack_ollama_models": [MODEL],
            "aistack_gpu": "none",
            # The real LiteLLM cannot start with a database offline (test_real_software.py).
            "aistack_postgres_enabled": False,
            "aistack_status_retries": 120,  # hang guard: a loaded machine starts slowly
            "aistack_status_delay": 5,
        }
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "ANSIBLE_HOME": str(self.workdir / "ansible"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.workdir / "cp"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
        argv = ["ansible-playbook", "-i", str(self.workdir / "inventory.yml"), str(PLAYBOOK),
                "-e", json.dumps(extra)]  # fmt: skip
        started = time.monotonic()
        res = subprocess.run(
            [*self.bridge.exec_argv(), *argv], cwd=PLAYBOOK.parent, env=env,
            capture_output=True, text=True, timeout=2400,
        )  # fmt: skip
        took = time.monotonic() - started
        print(f"$ {' '.join(argv[:4])}: rc={res.returncode} in {took:.0f} s (for the record)")
        print(_recap_text(res.stdout))
        return res


def _recap_text(out: str) -> str:
    return out[out.rfind("PLAY RECAP") :] if "PLAY RECAP" in out else out[-3000:]


def recap(res: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """host -> {ok, changed, unreachable, failed} from the play recap."""
    out: dict[str, dict[str, int]] = {}
    for line in _recap_text(res.stdout).splitlines():
        if m := RECAP.match(line):
            out[m.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed"),
                                       map(int, m.groups()[1:]), strict=True))  # fmt: skip
    return out


def _inventory(addresses: dict[str, str], key: Path) -> dict[str, Any]:
    """The fleet's inventory: the GPU hosts publish Ollama on their bridge address (each
    stand-in answering with its host's name) and open their agent's API to the bridge."""
    gpus = {}
    for h in GPUS:
        ollama = {"ollama": {"env": {"OLLAMA_STANDIN_REPLY": reply_of(h)}}}
        gpus[h] = {
            "ansible_host": addresses[h],
            "aistack_ollama_publish": addresses[h],
            "aistack_config_extra": {**GPU_API, "stack": ollama},
        }
    front = {"ansible_host": addresses[FRONT], "aistack_config_extra": FRONT_EXTRA}
    ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    connection = {
        "ansible_user": "root",
        "ansible_become": False,  # root already (the guests have no sudo)
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": ssh_args,
    }
    children = {"front": {"hosts": {FRONT: front}}, "gpu": {"hosts": gpus}}
    return {"all": {"vars": connection, "children": children}}


@contextlib.contextmanager
def journals_on_failure(fleet: Fleet, *units: str) -> Iterator[None]:
    """Print each guest's journal of units when the block fails: the cause of a fleet
    failure is usually on another host than the one the assertion looked at."""
    try:
        yield
    except BaseException:
        for name, guest in fleet.guests.items():
            if guest.alive():
                with contextlib.suppress(Exception):
                    print(f"--- journal of {name} ---\n{guest.journal(*units, lines=80)}")
        raise


@pytest.fixture(scope="module")
def fleet(testbed_host: None, agent_deb: Path) -> Iterator[Fleet]:
    """Three guests on a private bridge, SSH in each, the images each role needs loaded,
    and the playbook's first run; everything (guests, namespace, keys) gone after."""
    for tool in ("ansible-playbook", "ssh", "ssh-keygen", "prometheus"):
        assert shutil.which(tool), f"{tool} is required (make deps installs it)"
    workdir = Path(tempfile.mkdtemp(prefix="fleet-"))  # short: ssh control socket paths
    bridge: Bridge | None = None
    guests: dict[str, Guest] = {}
    try:
        key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aistack-e2e-fleet",
                        "-f", str(key)], check=True, timeout=30)  # fmt: skip
        bridge = Bridge.create()
        addresses: dict[str, str] = {}
        for name, host in HOSTS.items():
            guest = testbed.boot_guest(f"aistack-fleet-{name}-{bridge.netns[-6:]}")
            guests[name] = guest
            addresses[name] = bridge.attach(guest, host)
            testbed.start_sshd(guest, key.with_suffix(".pub").read_text())
            guest.units_of_interest.update([testbed.AGENT_UNIT, "ollama.service"])
        images = {"ollama": testbed.ensure_image(guests["gpu1"], "ollama")}
        testbed.ensure_image(guests["gpu2"], "ollama")
        images["open-webui"] = testbed.ensure_image(guests[FRONT], "open-webui")
        images["litellm"] = testbed.ensure_image(guests[FRONT], "litellm-real")
        guests[FRONT].units_of_interest.update(["litellm.service", "open-webui.service"])
        (workdir / "inventory.yml").write_text(yaml.safe_dump(_inventory(addresses, key)))
        fleet = Fleet(bridge, guests, addresses, workdir, agent_deb, images,
                      subprocess.CompletedProcess([], 0, "", ""))  # fmt: skip
        fleet.first_run = fleet.playbook()
        yield fleet
    finally:
        errors: list[str] = []
        for guest in guests.values():
            try:
                guest.teardown()
            except Exception as exc:  # the others must go all the same
                errors.append(str(exc))
        try:
            if bridge is not None:
                bridge.teardown()
        except Exception as exc:
            errors.append(str(exc))
        shutil.rmtree(workdir, ignore_errors=True)
        assert not errors, errors


def chat(front: Guest, key: str, text: str = "Say hello.") -> tuple[int, str]:
    """One chat completion through the front's LiteLLM: (HTTP status, the reply's text or
    the error body)."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    code, out = front.http("POST", f"{LITELLM}/v1/chat/completions", body, timeout=60,
                           headers=headers)  # fmt: skip
    if code != 200:
        return code, out
    return code, str(json.loads(out)["choices"][0]["message"]["content"]).strip()


def master_key(front: Guest) -> str:
    return front.read_file("/etc/aistack/secrets/litellm-master-key").decode().strip()


def served_by(replies: list[str]) -> dict[str, int]:
    return {h: sum(r == reply_of(h) for r in replies) for h in GPUS}


def backends(front: Guest) -> dict[str, Any]:
    doc: dict[str, Any] = status(front)[1].get("backends") or {}
    return doc


def test_ansible_rolls_out_the_fleet_and_a_second_run_changes_nothing(fleet: Fleet) -> None:
    with journals_on_failure(fleet, testbed.AGENT_UNIT):
        first = fleet.first_run
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
        counts = recap(first)
        assert set(counts) == set(HOSTS), counts
        assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
        assert all(c["changed"] > 0 for c in counts.values()), counts
        # the guests reach the bridge and nothing else: no default route in any of them
        for name, guest in fleet.guests.items():
            routes = guest.run(["ip", "-4", "route", "show", "default"]).stdout.strip()
            assert routes == "", (name, routes)
        # what the role wrote: the front routes to both GPU hosts by their bridge addresses
        front_yaml = yaml.safe_load(fleet.front.read_file("/etc/aistack/agent.yaml"))
        want = [fleet.backend(h) for h in GPUS]
        assert front_yaml["stack"]["litellm"]["ollama_backends"] == want, front_yaml
        assert front_yaml["stack"]["ollama"]["enabled"] is False, front_yaml
        litellm = yaml.safe_load(fleet.front.read_file("/etc/aistack/litellm/config.yaml"))
        bases = sorted(m["litellm_params"]["api_base"] for m in litellm["model_list"])
        assert bases == want, litellm
        for h in GPUS:
            gpu_yaml = yaml.safe_load(fleet.guests[h].read_file("/etc/aistack/agent.yaml"))
            assert gpu_yaml["stack"]["ollama"]["allow_remote"] is True, gpu_yaml
            assert f"{fleet.addresses[h]}:11434" in gpu_yaml["stack"]["ollama"]["ports"]
            assert gpu_yaml["stack"]["litellm"]["enabled"] is False, gpu_yaml
        # each host's own view: the front ok with both backends up, each GPU host serving
        code, doc = status(fleet.front)
        assert code == 200 and doc["state"] == "ok", doc
        assert all(doc["backends"][u]["up"] for u in want), doc["backends"]
        assert all(healthy(doc["services"][s]) for s in ("litellm", "open-webui")), doc
        for h in GPUS:
            code, doc = status(fleet.guests[h])
            assert code == 200 and doc["state"] == "ok", (h, doc)
            assert healthy(doc["services"]["ollama"]), (h, doc["services"])
            assert "litellm" not in doc["services"] or not doc["services"]["litellm"].get(
                "enabled", True
            ), (h, doc["services"])

        second = fleet.playbook()
        assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
        counts = recap(second)
        assert set(counts) == set(HOSTS), counts
        assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), (
            counts,
            [ln for ln in second.stdout.splitlines() if ln.startswith("changed:")],
        )


def test_chat_completions_through_the_front_reach_both_backends(fleet: Fleet) -> None:
    front, key = fleet.front, master_key(fleet.front)
    with journals_on_failure(fleet, "litellm.service", "ollama.service"):
        replies: list[str] = []
        # simple-shuffle picks a deployment at random: 40 requests all on one has p = 2^-39
        for i in range(40):
            code, reply = chat(front, key, f"Request {i}.")
            assert code == 200, (code, reply)
            replies.append(reply)
            if i >= 5 and all(served_by(replies).values()):
                break
        assert set(replies) <= {reply_of(h) for h in GPUS}, replies
        print(f"{len(replies)} completions, served by {served_by(replies)}")
        assert all(served_by(replies).values()), served_by(replies)
        # ... and the stand-ins' own logs agree (each logs the /api/chat it answered)
        for h in GPUS:
            log = fleet.guests[h].journal("ollama.service", lines=2000)
            assert "POST /api/chat -> 200" in log, log[-2000:]


def test_prometheus_on_the_front_scrapes_all_three_agents(fleet: Fleet) -> None:
    front = fleet.front
    targets = ["127.0.0.1:9200", *(f"{fleet.addresses[h]}:9200" for h in GPUS)]
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [{"job_name": "aistack", "static_configs": [{"targets": targets}]}],
    }
    front.copy_in(binary("prometheus"), "/usr/local/bin/prometheus")
    front.write_file("/etc/e2e-prometheus/prometheus.yml", yaml.safe_dump(config))
    unit = "e2e-prometheus.service"
    front.run(
        ["systemd-run", "--unit", unit, "--", "/usr/local/bin/prometheus",
         "--config.file=/etc/e2e-prometheus/prometheus.yml",
         "--storage.tsdb.path=/var/lib/e2e-prometheus/data",
         "--web.listen-address=127.0.0.1:9090"]
    )  # fmt: skip
    front.units_of_interest.add(unit)

    def query(expr: str) -> list[dict[str, Any]]:
        doc = get_json(front, f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return list(doc["data"]["result"]) if doc else []

    def all_up() -> list[dict[str, Any]] | None:
        result = query('up{job="aistack"} == 1')
        return result if {r["metric"]["instance"] for r in result} == set(targets) else None

    with journals_on_failure(fleet, unit, testbed.AGENT_UNIT):
        front.wait_for("Prometheus scraping all three agents", all_up, timeout=300)
        # each host's own series, and the front's view of its backends
        hosts = {r["metric"]["instance"] for r in query("aistack_service_up")}
        assert hosts == set(targets), hosts
        up = {r["metric"]["backend"]: r["value"][1] for r in query("aistack_backend_up")}
        assert up == {fleet.backend(h): "1" for h in GPUS}, up


def test_kill_9_of_one_backend_requests_keep_succeeding_and_it_comes_back(fleet: Fleet) -> None:
    front, gpu1, key = fleet.front, fleet.guests["gpu1"], master_key(fleet.front)
    down_url, other = fleet.backend("gpu1"), fleet.backend("gpu2")
    gpu1.write_file(DROPIN_PATH, OUTAGE_DROPIN)
    gpu1.daemon_reload()
    try:
        with journals_on_failure(fleet, "ollama.service", "litellm.service", testbed.AGENT_UNIT):
            before = main_pid(gpu1, "ollama")
            killed = time.monotonic()
            gpu1.run(["kill", "-9", str(before)])

            # the front sees gpu1's Ollama down (and is degraded, not failed) ...
            def gpu1_down() -> dict[str, Any] | None:
                _, doc = status(front)
                seen = (doc.get("backends") or {}).get(down_url) or {}
                return doc if seen.get("up") is False else None

            doc = front.wait_for("the front seeing gpu1 down", gpu1_down, timeout=60)
            seen_down = time.monotonic() - killed
            assert doc["state"] == "degraded", doc
            assert doc["backends"][other]["up"] is True, doc["backends"]
            assert any("10.77.0.11" in r for r in doc.get("state_reasons") or []), doc

            # ... and every request is still answered, by gpu2. LiteLLM never cools down a
            # backend that refuses connections: without the rendered router setting
            # enable_weighted_failover, a request whose 3 tries all land on gpu1 got a 500
            # (7 of 30 in one run); enough requests here that such a regression shows.
            outcomes = [chat(front, key, f"During the outage {i}.") for i in range(OUTAGE_REQUESTS)]
            answered = [reply for code, reply in outcomes if code == 200]
            print(f"during the outage: {len(answered)} of {OUTAGE_REQUESTS} answered, "
                  f"served by {served_by(answered)}")  # fmt: skip
            assert answered == [reply_of("gpu2")] * OUTAGE_REQUESTS, outcomes
            assert gpu1_down() is not None, "gpu1 came back before the requests were done"

            # gpu1's own systemd and agent bring Ollama back: a new container, healthy
            def gpu1_healed() -> dict[str, Any] | None:
                code, doc = status(gpu1)
                svc = (doc.get("services") or {}).get("ollama")
                if not svc or not healthy(svc) or main_pid(gpu1, "ollama") == before:
                    return None
                return doc if code == 200 and doc["state"] == "ok" else None

            healed = gpu1.wait_for("gpu1's Ollama healed", gpu1_healed, timeout=300)
            healed_after = time.monotonic() - killed
            # the front sees it up again, and is ok again
            front.wait_for(
                "the front seeing gpu1 up again",
                lambda: (d := status(front)[1])["state"] == "ok" and d["backends"][down_url]["up"],
                timeout=120,
            )
            seen_up = time.monotonic() - killed
            unit = gpu1.unit_properties("ollama.service", "NRestarts")
            actions = (healed.get("heal") or {}).get("actions")
            print(
                f"outage (for the record): the front saw gpu1 down after {seen_down:.1f} s, "
                f"gpu1 healthy again after {healed_after:.1f} s (systemd NRestarts "
                f"{unit.get('NRestarts')}, agent actions {actions}), the front saw it up "
                f"after {seen_up:.1f} s"
            )
            # and LiteLLM sends gpu1 requests again once its cooldown is over
            replies = []

            def gpu1_serves() -> bool:
                code, reply = chat(front, key, "After the outage.")
                assert code == 200, (code, reply)
                replies.append(reply)
                return reply == reply_of("gpu1")

            front.wait_for("gpu1 serving again", gpu1_serves, timeout=300, interval=1)
            print(f"after the outage: {len(replies)} completions until gpu1 served one")
    finally:
        gpu1.run(["rm", "-f", DROPIN_PATH])
        gpu1.daemon_reload()
