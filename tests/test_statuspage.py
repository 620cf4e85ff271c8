"""The status page (GET /): rendering, escaping, the real agent's answer, and headless
Chromium (Debian's chromium) loading it: the page a person sees, scripts kept out."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.gpu.model import GpuSample
from agent.snapshot import SourceSnapshot, SourceState
from agent.status import AgentInfo, status_document
from agent.statuspage import CSP, PAGE_HEADERS, status_page
from agent.views import (
    HealServiceView,
    HealState,
    HealView,
    ProbesView,
    ProbeView,
    ServiceView,
    StackView,
)

from .conftest import HANG_S, AgentProcess, http, running_daemon, sandbox_yaml

HOSTILE = "<script>alert(1)</script>"
QUOTES = "\"'&"
GIB = 1 << 30


def _service(unit: str, **fields: Any) -> ServiceView:
    base: dict[str, Any] = dict(active_state="active", sub_state="running", health="healthy",
                                container_state="running", restarts=0)  # fmt: skip
    return ServiceView(unit=unit, **(base | fields))


def snapshots(
    failing: str = "litellm",
    reason: str = "exited with status 1: database connection refused (postgres:5432)",
    heal_state: HealState = "backing-off",
    extra: Mapping[str, ServiceView] | None = None,
) -> dict[str, SourceSnapshot[Any]]:
    """What the agent's sources publish on a GPU host with one service failing."""
    now = time.time()
    services = {
        "ollama": _service("ollama.service", memory_bytes=int(6.4 * GIB), restarts=1),
        "open-webui": _service("open-webui.service", memory_bytes=int(0.9 * GIB)),
        "postgres": _service("postgres.service", memory_bytes=210 << 20),
        failing: _service(
            f"{failing}.service",
            active_state="activating",
            sub_state="auto-restart",
            health="unknown",
            container_state="exited",
            restarts=4,
            last_error=reason,
        ),
        **(extra or {}),
    }
    heal_reason = "restart 4 of 5 within 10m; next attempt in 40s"
    if heal_state == "gave-up":
        heal_reason = reason
    gpu = GpuSample(index=0, uuid="GPU-0", name="NVIDIA RTX 4090", vendor="nvidia",
                    temperature_celsius=61.0, memory_used_bytes=7 * GIB,
                    memory_total_bytes=24 * GIB, utilization_ratio=0.37,
                    power_watts=182.0).as_dict()  # fmt: skip
    gpu |= {"healthy": True, "health": "ok", "reasons": [], "warnings": []}
    return {
        "podman": SourceSnapshot("podman", SourceState.OK, data={"version": "5.4.2"}),
        "systemd": SourceSnapshot("systemd", SourceState.OK, data={"version": "257"}),
        "gpu": SourceSnapshot("gpu", SourceState.OK, data={"backend": "nvml", "gpus": [gpu]}),
        "stack": SourceSnapshot(
            "stack", SourceState.DEGRADED, f"{failing}: {reason}", StackView(services)
        ),
        "probes": SourceSnapshot(
            "probes",
            SourceState.OK,
            data=ProbesView({name: ProbeView(ok=True) for name in services if name != failing}),
        ),
        "heal": SourceSnapshot(
            "heal",
            SourceState.OK,
            data=HealView(
                services={
                    failing: HealServiceView(state=heal_state, reason=heal_reason, restarts=4)
                }
            ),
        ),
        "backups": SourceSnapshot(
            "backups",
            SourceState.OK,
            data={
                "enabled": True,
                "last_success_at": now - 3 * 3600 - 720,
                "stale_after_seconds": 1.5 * 86400,
                "last_size_bytes": 48_213_504,
                "next_run_at": now + 18 * 3600,
                "retained": {"all": 7},
            },
        ),
    }


def document(**kwargs: Any) -> dict[str, Any]:
    """The /status document of `snapshots(...)`, as the agent builds it."""
    info = AgentInfo(config_path="/etc/aistack/agent.yaml", started_at=time.time() - 3 * 86400,
                     started_monotonic=time.monotonic() - 3 * 86400)  # fmt: skip
    return status_document(info, snapshots(**kwargs))


class Elements(HTMLParser):
    """Every element and attribute of a page, as a browser's tokenizer sees them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.style: list[str] = []
        self._in_style = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style.append(data)


def _hostile_document() -> dict[str, Any]:
    return document(
        failing=HOSTILE,
        reason=f"{HOSTILE} {QUOTES} <img src=x onerror=alert(2)>",
        heal_state="gave-up",
        extra={
            QUOTES: _service(
                HOSTILE, active_state=HOSTILE, sub_state=QUOTES, health='" onmouseover="alert(3)'
            )
        },
    )


# --- (1) rendering, pure ---


def test_hostile_names_reasons_and_states_are_escaped_never_raw() -> None:
    page = status_page(_hostile_document())
    assert HOSTILE not in page and "<img" not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&#x27;&amp;" in page  # the quotes-and-ampersand service name
    assert "&quot; onmouseover=&quot;alert(3)" in page
    parsed = Elements(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    names = {name for name, _ in parsed.attrs}
    assert not [n for n in names if n.startswith("on")], names
    assert not names & {"src", "href", "action", "style"}, names


def test_a_failing_service_shows_its_reason_on_its_own_row() -> None:
    page = status_page(document())
    assert page.count('<tr class="why">') == 1
    row = re.search(r'<tr class="has-why"><td class="name"[^>]*>litellm</td>.*?</tr>'
                    r'<tr class="why"><td colspan="6">([^<]*)</td></tr>', page)  # fmt: skip
    assert row, page
    assert "database connection refused (postgres:5432)" in row.group(1)
    assert "next attempt in 40s" in row.group(1)  # the heal state's part of the reason
    assert ">degraded<" in page  # the overall state, in the header


def test_the_page_shows_every_section_of_the_document() -> None:
    page = status_page(document())
    for text in ("Services", "GPUs", "Backups", "Sources", "ollama", "open-webui", "postgres",
                 "NVIDIA RTX 4090", "6.4 GiB", "3h 12m ago", "46.0 MiB", "backing-off",
                 "podman", "systemd", "auto-restart"):  # fmt: skip
        assert text in page, text


def test_the_csp_allows_exactly_the_style_element_by_its_hash() -> None:
    page = status_page(_hostile_document())
    (style,) = Elements(page).style
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CSP
    assert CSP.startswith("default-src 'none'; ")
    for part in ("img-src 'none'", "base-uri 'none'", "form-action 'none'",
                 "frame-ancestors 'none'"):  # fmt: skip
        assert part in CSP


def test_the_page_refreshes_itself_and_fits_a_phone() -> None:
    page = status_page(document())
    assert '<meta http-equiv="refresh" content="10">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width:" in page


def test_an_empty_document_renders() -> None:
    page = status_page({})
    assert "no service known yet" in page and "no GPU" in page


# --- (2) the real agent ---


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("page")
    with running_daemon(tmp, "", sandbox_yaml(tmp)) as proc:
        yield proc


def test_the_agent_serves_the_page_without_a_token(agent: AgentProcess) -> None:
    status, headers, body = http("GET", f"{agent.base}/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    for name, value in PAGE_HEADERS.items():
        assert headers[name.lower()] == value
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Sources</h2>" in page
    assert agent.token not in page


def test_the_page_and_status_tell_the_same_state(agent: AgentProcess) -> None:
    import json

    state = json.loads(http("GET", f"{agent.base}/status")[2])["state"]
    page = http("GET", f"{agent.base}/")[2].decode()
    assert f"<title>aistack: {state}</title>" in page


def test_the_page_refuses_a_rebound_host(agent: AgentProcess) -> None:
    status, _, _ = http("GET", f"{agent.base}/", {"Host": "attacker.example:9200"})
    assert status == 421


# --- (3) headless Chromium ---


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's chromium headless; its console messages go to stderr."""
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(binary).exists(), "chromium is required (make deps installs it)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         *args],
        capture_output=True, text=True, timeout=HANG_S,
    )  # fmt: skip


def console(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_renders_the_live_page(agent: AgentProcess, tmp_path: Path) -> None:
    proc = chromium(tmp_path, "--dump-dom", f"{agent.base}/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dom = proc.stdout
    for heading in ("Services", "GPUs", "Backups", "Sources"):
        assert f"<h2>{heading}</h2>" in dom, dom
    assert "no service known yet" in dom  # this agent has no stack applied
    for source in ("podman", "systemd", "gpu"):
        assert f'data-label="source">{source}</td>' in dom
    assert "no Podman API socket" in dom  # a source's reason, for a person
    assert console(proc) == []  # no CSP violation: the style is allowed by its hash
    shot = tmp_path / "live.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=412,915", f"{agent.base}/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.fixture
def serve_page() -> Iterator[Any]:
    """A tiny http.server on 127.0.0.1 answering GET / with a page, as the agent does."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages["page"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            for name, value in PAGE_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(page: str) -> str:
        pages["page"] = page
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    server.shutdown()
    server.server_close()
    thread.join(HANG_S)


def test_chromium_shows_a_script_reason_as_text_and_runs_nothing(
    serve_page: Any, tmp_path: Path
) -> None:
    marker = "xss-ran-" + "7f3a"
    doc = document(
        failing="litellm",
        reason=f'<script>console.log("{marker}")</script><img src=x onerror="console.log(1)">',
        heal_state="gave-up",
    )
    proc = chromium(tmp_path, "--dump-dom", serve_page(status_page(doc)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    dom = proc.stdout
    assert "<title>aistack: failed</title>" in dom
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    assert f'&lt;script&gt;console.log("{marker}")&lt;/script&gt;' in dom  # shown as text
    assert console(proc) == []  # nothing ran, nothing was blocked: nothing was there


def test_a_front_hosts_backends_show_with_the_reason_of_one_down() -> None:
    doc = document()
    doc["backends"] = {
        "http://gpu1:11434": {"up": True, "models": ["llama3.2:1b"], "missing": [],
                              "latency_seconds": 0.038, "reason": None},
        "http://<gpu2>:11434": {"up": False, "models": [], "missing": [],
                                "latency_seconds": None, "reason": "connection refused"},
    }  # fmt: skip
    page = status_page(doc)
    assert "<h2>Ollama backends</h2>" in page and "38 ms" in page
    assert "http://&lt;gpu2&gt;:11434" in page and "<gpu2>" not in page
    assert '<tr class="why"><td colspan="4">connection refused</td></tr>' in page
    assert "Ollama backends" not in status_page(document())  # a host without any
