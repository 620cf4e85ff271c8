"""What the data holds, recorded before the move and compared after it.

- Ollama: the models (from the manifests folder: registry/namespace/model/tag) and every
  blob's name and size (the names are their sha256; a blob is rewritten whole, never in
  place, so name + size catches a lost or truncated one without reading gigabytes).
- Open WebUI: `PRAGMA integrity_check` of webui.db and the row count of each table.
- PostgreSQL: per table, the row count and an order-independent checksum of the rows
  (md5 over the sorted md5 of each row's text), read through psql in the container.

`compare(before, after)` lists the differences a person can read; [] means the same.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from ..backup.restore import ident, psql
from ..backup.sources import DumpSource

Manifest = dict[str, Any]


def ollama(root: Path) -> Manifest:
    """Models and blobs under an Ollama data folder (/root/.ollama)."""
    models_dir = root / "models"
    manifests = models_dir / "manifests"
    models = []
    if manifests.is_dir():
        for path in sorted(p for p in manifests.rglob("*") if p.is_file()):
            parts = path.relative_to(manifests).parts
            if len(parts) >= 2:
                models.append("/".join(parts[:-1]) + ":" + parts[-1])
    blobs = {}
    blob_dir = models_dir / "blobs"
    if blob_dir.is_dir():
        for entry in os.scandir(blob_dir):
            if entry.is_file(follow_symlinks=False):
                blobs[entry.name] = entry.stat(follow_symlinks=False).st_size
    return {"models": models, "blobs": dict(sorted(blobs.items()))}


def webui(root: Path) -> Manifest:
    """Open WebUI's database: integrity and rows per table (read-only; the app is stopped)."""
    db = root / "webui.db"
    if not db.is_file():
        return {"database": "absent"}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        integrity = ", ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        tables = {}
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            tables[name] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    finally:
        conn.close()
    return {"integrity": integrity, "tables": tables}


async def postgres(source: DumpSource, database: str) -> Manifest:
    """Rows and a checksum per table of `database` (every schema but the system's)."""
    listing = await psql(
        source,
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema') ORDER BY 1, 2",
        database,
        "migrate",
    )
    tables = {}
    for line in listing.splitlines():
        if "\t" not in line:
            continue
        schema, table = line.split("\t", 1)
        name = f"{ident(schema)}.{ident(table)}"
        row = await psql(
            source,
            f"SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM "
            f"(SELECT md5(t::text) AS h FROM {name} t) s",
            database,
            "migrate",
        )
        count, checksum = ([*row.split("\t"), ""])[:2]
        tables[f"{schema}.{table}"] = {"rows": int(count), "md5": checksum}
    return {"database": database, "tables": tables}


def compare(before: Manifest, after: Manifest, what: str, grown: bool = False) -> list[str]:
    """Differences between two manifests of the same kind, as sentences. `grown`: a
    table with more rows than before is no difference (an application that runs on the
    data may add rows; none may go)."""
    out = []
    if "models" in before:
        lost = sorted(set(before["models"]) - set(after.get("models", [])))
        if lost:
            out.append(f"{what}: models missing after: {', '.join(lost)}")
        for blob, size in before["blobs"].items():
            got = after.get("blobs", {}).get(blob)
            if got != size:
                out.append(
                    f"{what}: blob {blob[:19]}: {size} bytes before, "
                    f"{'none' if got is None else got} after"
                )
    if "tables" in before:
        if after.get("database") == "absent":
            return [*out, f"{what}: the database is missing after"]
        if after.get("integrity", "ok") != "ok":
            out.append(f"{what}: integrity_check after: {after.get('integrity')}")
        for table, value in before["tables"].items():
            got = after.get("tables", {}).get(table)
            if got == value or (grown and isinstance(got, int) and got >= value):
                continue
            out.append(f"{what}: table {table}: {_short(value)} before, {_short(got)} after")
    return out


def _short(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, dict):
        return f"{value['rows']} rows (md5 {value['md5'][:8]})"
    return f"{value} rows"
