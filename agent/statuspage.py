"""The status page (GET /): the /status document rendered as HTML for a person.

A pure function of the document `status.status_document` builds for /status, so the page
and the JSON never disagree: no fact is derived here, only laid out. Service names,
states and reasons come from containers, unit files, configs and logs, so every value is
escaped (`html.escape`), and CSS classes come only from a fixed table. The page carries
no script and no external asset (it must work offline, over an SSH tunnel to loopback);
its one inline <style> is allowed by hash in the Content-Security-Policy (`PAGE_HEADERS`),
which forbids everything else. It refreshes itself every 10 s and reflows on a phone.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from .tabular import age_text

REFRESH_SECONDS = 10
RECENT_ACTIONS = 5  # heal actions shown; /status has the rest

STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--mute:#656d76;
--line:#d0d7de;--tint:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--ok:#3fb950;--warn:#d29922;--bad:#f85149;
--mute:#8d96a0;--line:#30363d;--tint:#161b22}}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
max-width:72rem;padding:1rem}
header{border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem;
background:var(--tint)}
h1{font-size:1.35rem;margin:0}
h2{font-size:1.05rem;margin:1.5rem 0 .4rem;padding-bottom:.2rem;
border-bottom:1px solid var(--line)}
ul{margin:.4rem 0 0;padding-left:1.2rem}
p{margin:.4rem 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top;overflow-wrap:anywhere}
th{font-weight:600;font-size:.8rem;color:var(--mute);text-transform:uppercase}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.has-why td{border-bottom:0}
tr.why td{padding-top:0;color:var(--bad)}
tr.why td::before{content:"\\21B3  "}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.state{font-weight:700;text-transform:uppercase}
.mute,footer{color:var(--mute);font-size:.85rem}
footer{margin-top:1.5rem}
@media (max-width:640px){
body{padding:.6rem}
table,tbody,tr,td{display:block}
thead{display:none}
tr{border-bottom:1px solid var(--line);padding:.35rem 0}
tr.has-why{border-bottom:0;padding-bottom:0}
td{border:0;padding:.05rem 0}
td.n{text-align:left}
td[data-label]::before{content:attr(data-label) ": ";color:var(--mute)}
td.name{font-weight:600;font-size:1.05rem}
td.name[data-label]::before{content:none}
}
"""

CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# What GET / answers with besides its Content-Type (text/html; charset=utf-8).
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}

# The colour of a state word; a word not here is shown plain. Never a value as a class.
_TONES = {
    **dict.fromkeys(("ok", "healthy", "active", "running", "on", "up"), "ok"),
    **dict.fromkeys(
        ("degraded", "warning", "starting", "activating", "deactivating", "reloading",
         "backing-off", "waiting-for-dependency", "pending", "failing", "stale", "paused",
         "unknown", "disabled", "not-configured"),
        "warn",
    ),
    **dict.fromkeys(
        ("failed", "unhealthy", "gave-up", "unavailable", "never-succeeded", "inactive",
         "exited", "absent", "off", "down"),
        "bad",
    ),
}  # fmt: skip
_DASH = "\u2014"


def _e(value: Any) -> str:
    """Any value as escaped text; None as a dash."""
    return _DASH if value is None else html.escape(str(value), quote=True)


def _tone(word: Any) -> str:
    return _TONES.get(word, "") if isinstance(word, str) else ""


def _word(value: Any) -> str:
    """A state word, escaped, coloured by what it means."""
    tone = _tone(value)
    return f'<span class="{tone}">{_e(value)}</span>' if tone else _e(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bytes(value: Any) -> str:
    n = _number(value)
    if n is None:
        return _e(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _duration(value: Any) -> str:
    n = _number(value)
    return _e(value) if n is None else age_text(n)


def _ago(value: Any) -> str:
    return _e(None) if _number(value) is None else f"{_duration(value)} ago"


def _td(label: str, content: str, cls: str = "") -> str:
    """A cell; `content` is already escaped HTML, `label` a fixed column name."""
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-label="{html.escape(label)}">{content}</td>'


def _table(columns: Iterable[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="mute">{_e(empty)}</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rows(cells: str, reason: Any, span: int) -> list[str]:
    """A row, and under it the reason on its own row when there is one."""
    if not reason:
        return [f"<tr>{cells}</tr>"]
    why = f'<tr class="why"><td colspan="{span}">{_e(reason)}</td></tr>'
    return [f'<tr class="has-why">{cells}</tr>', why]


def _as_of(doc: Mapping[str, Any]) -> str | None:
    """When the document was made: its start time plus its uptime."""
    started, uptime = doc.get("started_at"), _number(doc.get("uptime_seconds"))
    if not isinstance(started, str) or uptime is None:
        return None
    try:
        at = datetime.fromisoformat(started) + timedelta(seconds=uptime)
    except (ValueError, OverflowError):
        return None
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _header(doc: Mapping[str, Any]) -> str:
    state = doc.get("state")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in doc.get("state_reasons") or ())
    heal = doc.get("heal") or {}
    if not heal:
        healing = ""
    elif not heal.get("enabled"):
        healing = f"<p>healing: {_word('off')}</p>"
    elif heal.get("paused"):
        healing = f"<p>healing: {_word('paused')} ({_e(heal.get('paused'))})</p>"
    else:
        healing = f"<p>healing: {_word('on')}</p>"
    facts = (
        f"aistack-agent {_e(doc.get('version'))}, pid {_e(doc.get('pid'))}, "
        f"up {_duration(doc.get('uptime_seconds'))}, config {_e(doc.get('config_path'))}"
    )
    return (
        f'<header><h1>aistack: <span class="state {_tone(state)}">{_e(state)}</span></h1>'
        f"{f'<ul>{reasons}</ul>' if reasons else ''}{healing}"
        f'<p class="mute">{facts}</p></header>'
    )


def _services(services: Mapping[str, Any]) -> str:
    rows = []
    for name, svc in sorted(services.items()):
        heal = svc.get("heal") or {}
        reason = svc.get("reason")
        unit = _word(svc.get("active_state"))
        if svc.get("sub_state"):
            unit += f" ({_e(svc.get('sub_state'))})"
        cells = (
            _td("service", _e(name), "name")
            + _td("unit", unit)
            + _td("health", _word(svc.get("health")))
            + _td("heal", _word(heal.get("state")))
            + _td("restarts", _e(svc.get("restarts")), "n")
            + _td("memory", _bytes(svc.get("memory_bytes")), "n")
        )
        rows += _rows(cells, reason, 6)
    columns = ("service", "unit", "health", "heal", "restarts", "memory")
    return "<h2>Services</h2>" + _table(columns, rows, "no service known yet")


def _gpus(gpus: Iterable[Any], source: Mapping[str, Any] | None) -> str:
    rows = []
    for gpu in gpus:
        used, total = gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes")
        util = _number(gpu.get("utilization_ratio"))
        temp = _number(gpu.get("temperature_celsius"))
        power = _number(gpu.get("power_watts"))
        cells = (
            _td("gpu", f"{_e(gpu.get('index'))}: {_e(gpu.get('name'))}", "name")
            + _td("health", _word(gpu.get("health")))
            + _td("memory", f"{_bytes(used)} / {_bytes(total)}", "n")
            + _td("use", _e(None) if util is None else f"{util * 100:.0f}%", "n")
            + _td("temp", _e(None) if temp is None else f"{temp:.0f} \u00b0C", "n")
            + _td("power", _e(None) if power is None else f"{power:.0f} W", "n")
        )
        why = [*(gpu.get("reasons") or ()), *([gpu["error"]] if gpu.get("error") else [])]
        rows += _rows(cells, "; ".join(str(w) for w in why), 6)
    empty = "no GPU"
    if source is not None and source.get("reason"):
        empty = f"no GPU: {source.get('reason')}"
    columns = ("gpu", "health", "memory", "use", "temp", "power")
    return "<h2>GPUs</h2>" + _table(columns, rows, empty)


def _backends(backends: Mapping[str, Any]) -> str:
    """A front host's remote Ollama backends (stack.litellm.ollama_backends); nothing on a
    host without any."""
    rows = []
    for url, b in sorted(backends.items()):
        latency = _number(b.get("latency_seconds"))
        cells = (
            _td("backend", _e(url), "name")
            + _td("state", _word("up" if b.get("up") else "down"))
            + _td("models", _e(len(b.get("models") or ())), "n")
            + _td("latency", _e(None) if latency is None else f"{latency * 1000:.0f} ms", "n")
        )
        rows += _rows(cells, b.get("reason"), 4)
    if not rows:
        return ""
    columns = ("backend", "state", "models", "latency")
    return "<h2>Ollama backends</h2>" + _table(columns, rows, "")


def _backups(backups: Mapping[str, Any]) -> str:
    state = backups.get("state")
    cells = (
        _td("state", _word(state))
        + _td("last success", _ago(backups.get("last_success_age_seconds")))
        + _td("size", _bytes(backups.get("last_size_bytes")), "n")
        + _td("next run", _e(backups.get("next_run_at")))
        + _td("kept", _e(backups.get("retained")), "n")
    )
    rows = _rows(cells, backups.get("reason"), 5)
    columns = ("state", "last success", "size", "next run", "kept")
    return "<h2>Backups</h2>" + _table(columns, rows, "")


def _heal_recent(heal: Mapping[str, Any] | None) -> str:
    recent = list((heal or {}).get("recent") or ())[-RECENT_ACTIONS:]
    rows = [
        "<tr>"
        + _td("at", _e(r.get("at")))
        + _td("service", _e(r.get("service")), "name")
        + _td("action", f"{_e(r.get('action'))} by {_e(r.get('by'))}")
        + _td("why", _e(r.get("reason")))
        + _td("result", _word(r.get("result")))
        + "</tr>"
        for r in reversed(recent)
    ]
    if not rows:
        return ""
    columns = ("at", "service", "action", "why", "result")
    return "<h2>Recent heal actions</h2>" + _table(columns, rows, "")


def _sources(sources: Mapping[str, Any]) -> str:
    rows = [
        "<tr>"
        + _td("source", _e(name), "name")
        + _td("state", _word(src.get("state")))
        + _td("checked", _ago(src.get("age_seconds")))
        + _td("reason", _e(src.get("reason")) if src.get("reason") else "")
        + "</tr>"
        for name, src in sorted(sources.items())
    ]
    columns = ("source", "state", "checked", "reason")
    return "<h2>Sources</h2>" + _table(columns, rows, "no source has reported yet")


def status_page(doc: Mapping[str, Any]) -> str:
    """The /status document as one HTML page (no script, no external asset)."""
    sources = doc.get("sources") or {}
    as_of = _as_of(doc)
    body = (
        _header(doc)
        + _services(doc.get("services") or {})
        + _gpus(doc.get("gpus") or (), sources.get("gpu"))
        + _backends(doc.get("backends") or {})
        + _backups(doc.get("backups") or {})
        + _heal_recent(doc.get("heal"))
        + _sources(sources)
    )
    footer = (
        f"as of {_e(as_of)}; " if as_of else ""
    ) + f"refreshes every {REFRESH_SECONDS} s; the same facts as JSON at /status"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>aistack: {_e(doc.get('state'))}</title>"
        f"<style>{STYLE}</style></head>"
        f"<body>{body}<footer>{footer}</footer></body></html>\n"
    )
