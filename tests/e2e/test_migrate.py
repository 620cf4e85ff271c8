"""`aistack migrate` in the testbed: a seed-shaped compose stack with real data taken over.

The old stack is what a user runs today: the seed's four services, started by the test
with Podman and the compose labels and bind mounts (./db, ./ollama, ./open-webui) that
docker compose / podman-compose give them, with the seed's container names (the same as
the managed ones). Its data is real: a PostgreSQL 17 with LiteLLM-shaped tables and
rows, an Ollama models folder with manifests and content-addressed blobs, and a
webui.db with Open WebUI's main tables (made by sqlite3). Secrets are the project's
own: POSTGRES_PASSWORD in the compose file, LITELLM_MASTER_KEY and a provider key in
.env, WEBUI_SECRET_KEY in the environment.

Checked: the dry run changes nothing; refusals (PostgreSQL major mismatch, no disk, a
container holding the data, a missing secret) change nothing; copy mode and in-place
mode move everything with the contents verified equal, the old password opening the
database and the old keys in use; kill -9 of `aistack migrate` before a step, then a
rerun, converges; --rollback brings the old stack back.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

PROJECT = "/srv/open-webui-stack"
STATE = "/var/lib/aistack/migrate/state.json"
OLD_NAMES = ("postgres", "ollama", "litellm", "open-webui")
PG_PASSWORD = "old-db-password-7f3a"
MASTER_KEY = "sk-old-master-key-91c2"
WEBUI_KEY = "old-webui-session-key-55"
PROVIDER_KEY = "sk-provider-abc123"
AGENT_YAML = "# the admin's own agent config: kept by migrate\napi:\n  port: 9200\n"


# The seed's images by their real names: the testbed's stand-ins (and its PostgreSQL 17)
# are tagged so, as a user's host has them pulled (no registry is reachable here).
REAL_NAMES = {
    "ollama": "docker.io/ollama/ollama:latest",
    "open-webui": "ghcr.io/open-webui/open-webui:main",
    "litellm": "ghcr.io/berriai/litellm-database:main-v1.63.6-nightly",
    "postgres": "docker.io/library/postgres:17",
}


def _compose(images: dict[str, str]) -> str:
    """The seed's compose file (its PostgreSQL 17 where the seed says 16: the testbed's)."""
    doc = {
        "services": {
            "ollama": {
                "image": images["ollama"], "container_name": "ollama",
                "volumes": ["./ollama:/root/.ollama"],
                "environment": ["OLLAMA_FLASH_ATTENTION=true"], "networks": ["proxy"],
            },
            "open-webui": {
                "image": images["open-webui"], "container_name": "open-webui",
                "volumes": ["./open-webui:/app/backend/data"], "networks": ["proxy"],
                "depends_on": ["ollama", "litellm"],
                "environment": ["OLLAMA_API_BASE_URL=http://ollama:11434",
                                "WEBUI_SECRET_KEY=${WEBUI_SECRET_KEY}"],
            },
            "litellm": {
                "image": images["litellm"], "container_name": "litellm",
                "env_file": [".env"], "volumes": ["./config.yml:/app/config.yaml"],
                "command": "--config /app/config.yaml --port 4000", "networks": ["proxy"],
                "environment": {
                    "DATABASE_URL": f"postgresql://llmproxy:{PG_PASSWORD}@db:5432/litellm",
                    "STORE_MODEL_IN_DB": "True",
                },
                "depends_on": ["db"],
            },
            "db": {
                "image": images["postgres"], "container_name": "postgres",
                "volumes": ["./db:/var/lib/postgresql/data"], "networks": ["proxy"],
                "environment": {"POSTGRES_DB": "litellm", "POSTGRES_USER": "llmproxy",
                                "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}"},
            },
        },
        "networks": {"proxy": {"external": True}},
    }  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


ENV = (
    f"POSTGRES_PASSWORD={PG_PASSWORD}\nLITELLM_MASTER_KEY={MASTER_KEY}\n"
    f"WEBUI_SECRET_KEY={WEBUI_KEY}\nOPENAI_API_KEY={PROVIDER_KEY}\n"
)
CONFIG_YML = (
    "model_list:\n  - model_name: llama3.2\n    litellm_params:\n"
    "      model: ollama/llama3.2:1b\n      api_base: http://ollama:11434\n"
    "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
)

SQL = """
CREATE TABLE "LiteLLM_VerificationToken" (token text PRIMARY KEY, key_name text,
  spend double precision, models text[], created_at timestamptz DEFAULT now());
INSERT INTO "LiteLLM_VerificationToken" SELECT md5(i::text), 'key-' || i, i * 0.01,
  ARRAY['llama3.2'] FROM generate_series(1, 40) i;
CREATE TABLE "LiteLLM_SpendLogs" (request_id text PRIMARY KEY, api_key text,
  spend double precision, "startTime" timestamptz, model text, metadata jsonb);
INSERT INTO "LiteLLM_SpendLogs" SELECT 'req-' || i, md5((i % 40)::text), i * 0.0001,
  timestamptz '2026-01-01' + i * interval '1 minute', 'llama3.2',
  jsonb_build_object('tokens', i) FROM generate_series(1, 5000) i;
CREATE TABLE "LiteLLM_ProxyModelTable" (model_id text PRIMARY KEY, model_name text,
  litellm_params jsonb);
INSERT INTO "LiteLLM_ProxyModelTable" VALUES ('m1', 'llama3.2', '{"model": "ollama/x"}');
"""


def _webui_db(path: Path) -> None:
    """Open WebUI's main tables (its schema, made by sqlite3), with rows."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE user (id TEXT PRIMARY KEY, name TEXT, email TEXT, role TEXT,
          profile_image_url TEXT, created_at INTEGER, updated_at INTEGER, settings TEXT);
        CREATE TABLE auth (id TEXT PRIMARY KEY, email TEXT, password TEXT, active INTEGER);
        CREATE TABLE chat (id TEXT PRIMARY KEY, user_id TEXT, title TEXT, chat TEXT,
          created_at INTEGER, updated_at INTEGER, archived INTEGER DEFAULT 0);
        CREATE TABLE config (id INTEGER PRIMARY KEY, data TEXT, version INTEGER);
    """)
    for i in range(3):
        conn.execute(
            "INSERT INTO user VALUES (?, ?, ?, ?, '', 0, 0, '{}')",
            (f"u{i}", f"user {i}", f"u{i}@example.com", "admin" if i == 0 else "user"),
        )
        conn.execute(
            "INSERT INTO auth VALUES (?, ?, ?, 1)",
            (f"u{i}", f"u{i}@example.com", "$2b$12$" + "x" * 53),
        )
    for i in range(120):
        chat = json.dumps({"messages": [{"role": "user", "content": f"question {i}" * 20}]})
        conn.execute(
            "INSERT INTO chat VALUES (?, ?, ?, ?, 0, 0, 0)",
            (f"c{i}", f"u{i % 3}", f"chat {i}", chat),
        )
    conn.execute("INSERT INTO config VALUES (1, '{\"ui\": {}}', 0)")
    conn.commit()
    conn.close()


def _ollama_dir(root: Path) -> list[str]:
    """An Ollama models folder: a manifest naming content-addressed blobs."""
    blobs = root / "models" / "blobs"
    blobs.mkdir(parents=True)
    layers = []
    for i, size in enumerate((3 << 20, 1 << 20, 4096)):
        data = hashlib.sha256(str(i).encode()).digest() * (size // 32)
        digest = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{digest}").write_bytes(data)
        layers.append({"digest": f"sha256:{digest}", "size": size})
    manifest = root / "models/manifests/registry.ollama.ai/library/llama3.2/1b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    return ["registry.ollama.ai/library/llama3.2:1b"]


def _psql(guest: Guest, container: str, sql: str) -> str:
    out = guest.podman("exec", container, "psql", "-X", "-At", "-U", "llmproxy", "-d", "litellm",
                       "-c", sql)  # fmt: skip
    return out.strip()


PG_FINGERPRINT = (
    "SELECT string_agg(n || ':' || c, ',' ORDER BY n) FROM ("
    "SELECT 'tokens' n, count(*) || '/' || md5(string_agg(token || spend, ',' ORDER BY token)) c "
    'FROM "LiteLLM_VerificationToken" UNION ALL '
    "SELECT 'spend', count(*) || '/' || md5(string_agg(request_id || spend || metadata::text, "
    "',' ORDER BY request_id)) FROM \"LiteLLM_SpendLogs\") s"
)


def _start_old(guest: Guest) -> None:
    """The old stack as compose runs it: labels, names, bind mounts, the proxy network."""
    spec = yaml.safe_load(guest.read_file(f"{PROJECT}/docker-compose.yml"))["services"]
    guest.podman("network", "create", "--ignore", "proxy")
    env = dict(line.split("=", 1) for line in ENV.splitlines())
    args = {
        "db": ["-e", "POSTGRES_DB=litellm", "-e", "POSTGRES_USER=llmproxy",
               "-e", f"POSTGRES_PASSWORD={PG_PASSWORD}", "--network-alias", "db",
               "-v", f"{PROJECT}/db:/var/lib/postgresql/data"],
        "ollama": ["-v", f"{PROJECT}/ollama:/root/.ollama"],
        "litellm": ["-e", f"LITELLM_MASTER_KEY={env['LITELLM_MASTER_KEY']}",
                    "-e", f"DATABASE_URL=postgresql://llmproxy:{PG_PASSWORD}@db:5432/litellm",
                    "-v", f"{PROJECT}/config.yml:/app/config.yaml"],
        "open-webui": ["-e", f"WEBUI_SECRET_KEY={WEBUI_KEY}",
                       "-v", f"{PROJECT}/open-webui:/app/backend/data"],
    }  # fmt: skip
    for service in ("db", "ollama", "litellm", "open-webui"):
        name = spec[service]["container_name"]
        guest.podman("run", "-d", "--name", name, "--network", "proxy", "--restart=always",
                     "--label", "com.docker.compose.project=open-webui-stack",
                     "--label", f"com.docker.compose.service={service}",
                     *args[service], spec[service]["image"], timeout=120)  # fmt: skip
    guest.wait_for("the old PostgreSQL", lambda: guest.run(
        ["podman", "exec", "postgres", "pg_isready", "-h", "127.0.0.1", "-U", "llmproxy"],
        check=False).returncode == 0, timeout=120)  # fmt: skip


def _old_stack(guest: Guest, deb: Path, sources: dict[str, str], names: dict[str, str],
               tmp_path: Path) -> Iterator[Guest]:  # fmt: skip
    """The agent installed (nothing applied), and the old stack running with its data:
    `sources` are the testbed's images, tagged as `names` (what the compose file says)."""
    testbed.install_agent_from_deb(guest, deb)
    guest.write_file("/etc/aistack/agent.yaml", AGENT_YAML)
    guest.run(["systemctl", "start", "podman.socket"], timeout=60)
    guest.units_of_interest.update([testbed.AGENT_UNIT,
                                    *(f"{s}.service" for s in testbed.STACK_SERVICES)])  # fmt: skip
    guest.start(testbed.AGENT_UNIT, timeout=90)
    project = tmp_path / "open-webui-stack"
    (project / "db").mkdir(parents=True)
    (project / "open-webui").mkdir()
    _ollama_dir(project / "ollama")
    _webui_db(project / "open-webui" / "webui.db")
    (project / "docker-compose.yml").write_text(_compose(names))
    for name, real in names.items():
        guest.podman("tag", sources[name], real)
    (project / ".env").write_text(ENV)
    (project / "config.yml").write_text(CONFIG_YML)
    guest.copy_in(project, PROJECT)
    _start_old(guest)
    guest.run(["podman", "exec", "-i", "postgres", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-U", "llmproxy", "-d", "litellm"], input=SQL)  # fmt: skip
    yield guest
    guest.run(["aistack", "migrate", PROJECT, "--rollback"], check=False, timeout=600)
    guest.run(["podman", "rm", "-f", "-t", "0", *OLD_NAMES,
               *(n + "-pre-aistack" for n in OLD_NAMES)], check=False, timeout=120)  # fmt: skip
    testbed.remove_stack(guest, PROJECT)
    for name, real in names.items():
        guest.podman("untag", sources[name], real, check=False)
    guest.run(["podman", "volume", "rm", "-f", "aistack-postgres-data", "aistack-ollama-models",
               "aistack-open-webui-data"], check=False)  # fmt: skip


@pytest.fixture
def old_stack(
    guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str,
    tmp_path: Path,
) -> Iterator[Guest]:  # fmt: skip
    sources = {**standin_images, "postgres": postgres_image}
    yield from _old_stack(guest, agent_deb, sources, REAL_NAMES, tmp_path)


PG15 = "docker.io/library/postgres:15"


@pytest.fixture
def old_stack_pg15(
    guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str,
    tmp_path: Path,
) -> Iterator[Guest]:  # fmt: skip
    """The same old stack on PostgreSQL 15 (Debian 12's), the new one's image 17 at hand."""
    old_pg = testbed.ensure_image(guest, "postgres-15")
    guest.podman("tag", postgres_image, REAL_NAMES["postgres"])
    sources = {**standin_images, "postgres": old_pg}
    try:
        yield from _old_stack(guest, agent_deb, sources, {**REAL_NAMES, "postgres": PG15},
                              tmp_path)  # fmt: skip
    finally:
        guest.podman("untag", postgres_image, REAL_NAMES["postgres"], check=False)


def _migrate(guest: Guest, *args: str, fault: str | None = None) -> tuple[int, str, str]:
    env = ["env", f"AISTACK_MIGRATE_FAULT={fault}"] if fault else []
    res = guest.run([*env, "aistack", "migrate", PROJECT, *args], check=False, timeout=1200)
    return res.returncode, str(res.stdout), str(res.stderr)


def _running(guest: Guest) -> dict[str, str]:
    out = guest.podman("ps", "-a", "--format", "{{.Names}} {{.State}}")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _tree_digest(guest: Guest, path: str) -> str:
    """Names, sizes and contents of every file under path (the old folders, untouched)."""
    res = guest.run(["sh", "-c", f"cd {path} && find . -type f -print0 | sort -z | "
                     "xargs -0 sha256sum | sha256sum"])  # fmt: skip
    return str(res.stdout).split()[0]


def _assert_nothing_changed(guest: Guest, before: dict[str, str]) -> None:
    assert guest.run(["test", "-e", STATE], check=False).returncode != 0, "a journal was written"
    assert guest.read_file("/etc/aistack/agent.yaml").decode() == AGENT_YAML
    assert _running(guest) == before
    assert guest.run(["sh", "-c", "ls /etc/containers/systemd/aistack 2>/dev/null"],
                     check=False).stdout.strip() == ""  # fmt: skip


def test_dry_run_and_refusals_change_nothing(old_stack: Guest, standin_images: dict[str, str],
                                             postgres_image: str) -> None:  # fmt: skip
    guest = old_stack
    before = _running(guest)
    assert all(before[n] == "running" for n in OLD_NAMES), before

    code, out, err = _migrate(guest, "--dry-run")
    assert code == 0, err
    assert "postgres" in err and "aistack-postgres-data" in err and "nothing was changed" in err
    assert PG_PASSWORD not in out + err and MASTER_KEY not in out + err, "a secret was printed"
    _assert_nothing_changed(guest, before)

    code, out, err = _migrate(guest, "--dry-run", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["facts"]["postgres_data_major"] == 17, doc
    assert sorted(doc["secrets"]) == ["OPENAI_API_KEY", "litellm-master-key",
                                      "postgres-password", "webui-secret-key"], doc  # fmt: skip

    # A PostgreSQL major mismatch: the compose file says postgres:16 for a 17 data folder.
    guest.write_file(
        f"{PROJECT}/docker-compose.override.yml",
        "services:\n  db:\n    image: docker.io/library/postgres:16\n",
    )
    code, out, err = _migrate(guest, "--yes")
    assert code == 65, (code, err)
    assert "is PostgreSQL 17 (PG_VERSION)" in err and "--pg-upgrade" in err, err
    guest.run(["rm", f"{PROJECT}/docker-compose.override.yml"])
    _assert_nothing_changed(guest, before)

    # A missing secret: .env without POSTGRES_PASSWORD.
    guest.write_file(f"{PROJECT}/.env", ENV.replace(f"POSTGRES_PASSWORD={PG_PASSWORD}\n", ""))
    code, out, err = _migrate(guest, "--yes")
    assert code == 65 and "POSTGRES_PASSWORD" in err, (code, err)
    guest.write_file(f"{PROJECT}/.env", ENV)
    _assert_nothing_changed(guest, before)

    # No disk: a (sparse) 10 TiB blob the copy would have to write.
    blob = f"{PROJECT}/ollama/models/blobs/sha256-{'0' * 64}"
    guest.run(["truncate", "-s", "10T", blob])
    code, out, err = _migrate(guest, "--yes")
    guest.run(["rm", blob])
    assert code == 65 and "not enough disk for a copy" in err and "--data in-place" in err, err
    _assert_nothing_changed(guest, before)

    # Another container holding the data.
    guest.podman("run", "-d", "--name", "intruder", "-v", f"{PROJECT}/ollama:/data",
                 standin_images["ollama"])  # fmt: skip
    try:
        code, out, err = _migrate(guest, "--yes")
        assert code == 65 and "intruder" in err and "podman stop intruder" in err, err
        _assert_nothing_changed(guest, {**before, "intruder": "running"})
    finally:
        guest.podman("rm", "-f", "-t", "0", "intruder")

    # Without --yes and no terminal: asks for it, changes nothing.
    code, out, err = _migrate(guest)
    assert code == 2 and "--yes" in err, err
    _assert_nothing_changed(guest, before)


def _assert_migrated(guest: Guest, pg_before: str, mode: str) -> dict[str, str]:
    states = _running(guest)
    for name in OLD_NAMES:
        assert states.get(f"{name}-pre-aistack") == "exited", states  # kept, stopped
        assert states.get(name) == "running", states  # the managed one
        # and it stays stopped at the next boot (podman-restart.service starts "always")
        policy = guest.podman("inspect", f"{name}-pre-aistack", "--format",
                              "{{.HostConfig.RestartPolicy.Name}}")  # fmt: skip
        assert policy.strip() == "no", (name, policy)
    code, body = guest.http("GET", "http://127.0.0.1:9200/status")
    assert code == 200, body
    services = json.loads(body)["services"]
    assert all(services[n]["health"] == "healthy" for n in testbed.STACK_SERVICES), services
    # the same rows, through the new PostgreSQL; the old password opens it over TCP
    assert _psql(guest, "postgres", PG_FINGERPRINT) == pg_before
    res = guest.run(["podman", "exec", "-e", f"PGPASSWORD={PG_PASSWORD}", "postgres", "psql",
                     "-X", "-At", "-h", "127.0.0.1", "-U", "llmproxy", "-d", "litellm",
                     "-c", "SELECT count(*) FROM \"LiteLLM_SpendLogs\""])  # fmt: skip
    assert res.stdout.strip() == "5000"
    # the old keys are the ones in use; secrets are files only root reads
    env = guest.podman("exec", "litellm", "cat", "/proc/1/environ").split("\0")
    assert f"LITELLM_MASTER_KEY={MASTER_KEY}" in env and f"OPENAI_API_KEY={PROVIDER_KEY}" in env
    env = guest.podman("exec", "open-webui", "cat", "/proc/1/environ").split("\0")
    assert f"WEBUI_SECRET_KEY={WEBUI_KEY}" in env
    mode_of = guest.run(["stat", "-c", "%a", "/etc/aistack/secrets/postgres-password"]).stdout
    assert mode_of.strip() == "600"
    assert guest.read_file("/etc/aistack/secrets/postgres-password").decode() == PG_PASSWORD
    agent_yaml = guest.read_file("/etc/aistack/agent.yaml").decode()
    assert agent_yaml.startswith(AGENT_YAML.splitlines()[0]), agent_yaml  # the comment kept
    for secret in (PG_PASSWORD, MASTER_KEY, WEBUI_KEY, PROVIDER_KEY):
        assert secret not in agent_yaml
        assert secret not in guest.run(["cat", STATE]).stdout
    # where the data is: the managed volumes, or the old folders bound in place
    mounts = json.loads(guest.podman("inspect", "postgres", "--format", "{{json .Mounts}}"))
    source = next(m for m in mounts if m["Destination"] == "/var/lib/postgresql/data")
    if mode == "copy":
        assert source.get("Name") == "aistack-postgres-data", source
    else:
        assert source["Source"] == f"{PROJECT}/db", source
    # the models and chats as they were, seen from inside the new containers
    blobs = guest.podman("exec", "ollama", "ls", "/root/.ollama/models/blobs").split()
    assert len(blobs) == 3, blobs
    return states


def test_copy_mode_with_kill_9_at_steps_then_rollback(old_stack: Guest) -> None:
    guest = old_stack
    pg_before = _psql(guest, "postgres", PG_FINGERPRINT)
    folders = {d: _tree_digest(guest, f"{PROJECT}/{d}") for d in ("ollama", "open-webui")}

    # A step that fails (injected, after the new stack came up) rolls back by itself: the
    # managed units and the copies go, agent.yaml is back, the old stack runs again.
    before = _running(guest)
    code, out, err = _migrate(guest, "--yes", fault="fail-at:verify")
    assert code == 70 and "verify failed: injected failure" in err, (code, err)
    assert "rolling back" in err and "removed the managed volume aistack-postgres-data" in err
    assert json.loads(guest.read_file(STATE))["phase"] == "rolled-back"
    guest.run(["rm", STATE])
    _assert_nothing_changed(guest, before)
    volumes = guest.podman("volume", "ls", "--format", "{{.Name}}").split()
    assert not [v for v in volumes if v.startswith("aistack-")], volumes
    assert _psql(guest, "postgres", PG_FINGERPRINT) == pg_before

    # Killed (SIGKILL, as a crash) before each of these steps, then run again: it goes on
    # from the journal and converges.
    for step in ("backup", "stop", "adopt", "up", "verify"):
        code, out, err = _migrate(guest, "--yes", fault=f"kill-before:{step}")
        assert code in (-9, 137), (step, code, err)
        state = json.loads(guest.read_file(STATE))
        assert step not in state["done"], state
    code, out, err = _migrate(guest, "--yes", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"], report
    verified = " ".join(report["verified"])
    assert "PostgreSQL litellm: 3 tables, 5041 rows, checksums as before" in verified, verified
    assert "the old POSTGRES_PASSWORD opens the database" in verified
    assert "ollama" in verified and "open_webui" in verified and "LITELLM_MASTER_KEY" in verified
    assert report["backup"]["id"] and report["backup"]["size_bytes"] > 0, report
    assert "accepts the old master key (HTTP 200; 401 without a key)" in verified, verified
    moved = {m["service"]: m for m in report["moved"]}  # said by the runs that were killed
    assert sorted(moved) == ["ollama", "open_webui", "postgres"], report
    assert moved["ollama"]["volume"] == "aistack-ollama-models", moved
    _assert_migrated(guest, pg_before, "copy")
    # copy mode: the old folders are exactly as they were
    assert {d: _tree_digest(guest, f"{PROJECT}/{d}") for d in folders} == folders

    # A second run has nothing to do.
    code, out, err = _migrate(guest, "--yes")
    assert code == 0 and "already migrated" in err, err

    # Rollback: the managed units go, the old stack runs again on its untouched data.
    code, out, err = _migrate(guest, "--rollback")
    assert code == 0, err
    states = _running(guest)
    assert all(states.get(n) == "running" for n in OLD_NAMES), states
    assert not any(n.endswith("-pre-aistack") for n in states), states
    policy = guest.podman("inspect", "postgres", "--format", "{{.HostConfig.RestartPolicy.Name}}")
    assert policy.strip() == "always"  # as the person had it
    assert guest.read_file("/etc/aistack/agent.yaml").decode() == AGENT_YAML
    assert _psql(guest, "postgres", PG_FINGERPRINT) == pg_before
    units = guest.run(["sh", "-c", "ls /etc/containers/systemd/aistack 2>/dev/null"],
                      check=False).stdout.split()  # fmt: skip
    assert not [u for u in units if u.endswith(".container")], units


def test_in_place_mode_with_kill_9_at_steps(old_stack: Guest) -> None:
    guest = old_stack
    pg_before = _psql(guest, "postgres", PG_FINGERPRINT)
    for step in ("quiesce", "manifest", "config"):
        code, out, err = _migrate(guest, "--yes", "--data", "in-place", fault=f"kill-before:{step}")
        assert code in (-9, 137), (step, code, err)
    code, out, err = _migrate(guest, "--yes", "--data", "in-place")
    assert code == 0, err
    assert "verified:" in out and "ollama" in out, out
    _assert_migrated(guest, pg_before, "in-place")
    agent_yaml = yaml.safe_load(guest.read_file("/etc/aistack/agent.yaml"))
    assert agent_yaml["stack"]["postgres"]["data"] == f"{PROJECT}/db", agent_yaml
    # nothing was copied: no managed data volumes
    volumes = guest.podman("volume", "ls", "--format", "{{.Name}}").split()
    assert "aistack-postgres-data" not in volumes, volumes
    assert os.path.basename(PROJECT) in PROJECT


def test_pg_upgrade_moves_15_to_17_by_dump_and_restore(old_stack_pg15: Guest) -> None:
    guest = old_stack_pg15
    assert _psql(guest, "postgres", "SHOW server_version_num").startswith("15")
    pg_before = _psql(guest, "postgres", PG_FINGERPRINT)
    # the new stack is to run 17: the compose file's override says so
    guest.write_file(
        f"{PROJECT}/docker-compose.override.yml",
        f"services:\n  db:\n    image: {REAL_NAMES['postgres']}\n",
    )
    code, out, err = _migrate(guest, "--yes")
    assert code == 65 and "is PostgreSQL 15 (PG_VERSION)" in err and "--pg-upgrade" in err, err
    code, out, err = _migrate(guest, "--yes", "--data", "in-place", "--pg-upgrade")
    assert code == 65 and "--data copy" in err, err
    # killed just before the restore, then run again: it restores and verifies
    code, out, err = _migrate(guest, "--yes", "--pg-upgrade", fault="kill-before:restore")
    assert code in (-9, 137), (code, err)
    code, out, err = _migrate(guest, "--yes", "--pg-upgrade", "--json")
    assert code == 0, err
    report = json.loads(out)
    moved = {m["service"]: m for m in report["moved"]}
    assert moved["postgres"]["by"].startswith("dump "), moved
    assert "checksums as before" in " ".join(report["verified"]), report
    assert _psql(guest, "postgres", "SHOW server_version_num").startswith("17")
    _assert_migrated(guest, pg_before, "copy")
    # the old 15 folder is as it was (the rollback's)
    assert guest.read_file(f"{PROJECT}/db/PG_VERSION").decode().strip() == "15"


def test_old_stopped_by_hand_is_taken_over_without_a_backup_through_it(old_stack: Guest) -> None:
    """--old-stopped: the person stopped the old stack (docker compose down, or here
    podman stop); migrate refuses while it runs, or while any process holds a file of
    the data, then moves it with no backup through the old server."""
    guest = old_stack
    pg_before = _psql(guest, "postgres", PG_FINGERPRINT)
    code, out, err = _migrate(guest, "--yes", "--old-stopped")
    assert code == 65 and "--old-stopped, but these old containers run" in err, err
    guest.podman("stop", "-t", "30", *reversed(OLD_NAMES), timeout=180)
    # a process of no container at all holding webui.db (Docker's would look the same)
    holder = guest.run(["sh", "-c", f"setsid sleep 600 < {PROJECT}/open-webui/webui.db "
                        "> /dev/null 2>&1 & echo $!"]).stdout.strip()  # fmt: skip
    try:
        code, out, err = _migrate(guest, "--yes", "--old-stopped")
        assert code == 65 and f"(pid {holder}) has {PROJECT}/open-webui/webui.db open" in err, err
    finally:
        guest.run(["kill", holder], check=False)
    code, out, err = _migrate(guest, "--yes", "--old-stopped", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backup"] == {} and any("no safety backup" in n for n in report["notes"])
    verified = " ".join(report["verified"])
    assert "the old POSTGRES_PASSWORD opens the database" in verified, verified
    assert "open_webui" in verified and "ollama" in verified
    _assert_migrated(guest, pg_before, "copy")
