"""Benchmark the backup pipeline against plain `pg_dump -Fc` into a file.

Starts a throw-away PostgreSQL server (Debian's, `apt-get install postgresql`; as root it
runs as the postgres user), generates a database of about --size-mb (default 1024 MB,
pg_database_size), then times, alternating, best of --rounds:

- baseline: `pg_dump -Fc <same compression> -f FILE` (pg_dump writes the file itself);
- agent:    the agent's dump stage (`agent.backup.dump.stream_to_file`: pg_dump's stdout
            through the agent, sha256 while streaming, fsync at the end), in a fresh
            Python process, whose peak RSS growth (VmHWM after - VmRSS before) is taken.

Also shown, not part of the target: a whole run (roles, dump, full-read verification
with pg_restore, commit) and the baseline followed by an fsync. Targets: agent time <=
1.10 x baseline, RSS growth <= 20 MB. Printed with the machine's conditions; exits 0
whatever the ratios, non-zero only when it could not measure.

    .venv/bin/python benchmarks/backup.py [--size-mb 1024] [--rounds 2] [--compression gzip]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conditions import print_conditions

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.10
TARGET_RSS_MB = 20.0
PASSWORD = "bench"

AGENT_DUMP = r"""
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
from agent.backup.dump import stream_to_file
from agent.backup.runner import BackupRunner
from agent.backup.sources import LocalSource
from agent.config import BackupConfig

args = json.loads(sys.argv[2])
source = LocalSource(args["host"], args["port"], "postgres", Path(args["pwfile"]))
before = status("VmRSS:")
start = time.perf_counter()
if args["mode"] == "dump":
    out = asyncio.run(stream_to_file(source, "pg_dump", args["dump_args"], Path(args["dest"]),
                                     "dump"))
    size = out.size
else:
    cfg = BackupConfig(directory=Path(args["dest"]), source="local", host=args["host"],
                       port=args["port"], user="postgres", database=args["db"],
                       password_file=Path(args["pwfile"]), compression=args["compression"],
                       min_free=1, dependents="none")
    result = asyncio.run(BackupRunner(cfg, Path("/nonexistent"), source=source).run("bench"))
    assert result.ok, result
    size = result.size_bytes
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "size": size, "rss_before": before,
                  "hwm_after": status("VmHWM:")}))
"""


def sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


class Server:
    def __init__(self, root: Path) -> None:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parent.parent.name),
        )
        if not found:
            sys.exit("benchmarks/backup.py: no PostgreSQL server (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.root = root
        self.port = _free_port()
        self.pwfile = root / "pw"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env["PGPASSWORD"] = PASSWORD

    def _as_pg(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def start(self) -> None:
        self.pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        sh(
            self._as_pg(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.root / "data"),
                    "-U",
                    "postgres",
                    f"--pwfile={self.pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB"
        )
        sh(
            self._as_pg(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.root / "data"),
                    "-o",
                    opts,
                    "-l",
                    str(self.root / "log"),
                    "-w",
                    "start",
                ]
            )
        )

    def stop(self) -> None:
        subprocess.run(
            self._as_pg(
                [str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"]
            ),
            capture_output=True,
        )

    def psql(self, sql: str, db: str = "postgres") -> str:
        return sh(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ],
            env=self.env,
        ).stdout.strip()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate(server: Server, db: str, size_mb: int) -> int:
    """A LiteLLM-like spend log: text keys, numbers, timestamps, JSON, mixed compressibility."""
    server.psql(f"CREATE DATABASE {db}")
    server.psql(
        "CREATE TABLE spend_logs (id bigserial PRIMARY KEY, request_id text, api_key text, "
        "model text, spend numeric(18, 8), tokens int, started timestamptz, meta jsonb, "
        "body text)",
        db,
    )
    target = size_mb << 20
    batch = 200_000
    while int(server.psql(f"SELECT pg_database_size('{db}')")) < target:
        server.psql(
            "INSERT INTO spend_logs (request_id, api_key, model, spend, tokens, started, meta, "
            "body) SELECT md5(random()::text), 'sk-' || (g % 50), "
            "(ARRAY['llama3.2:1b','qwen2.5:7b','gpt-4o'])[1 + g % 3], random() * 0.01, "
            "(random() * 4000)::int, now() - g * interval '1 s', "
            "jsonb_build_object('user', 'u' || (g % 997), 'tags', jsonb_build_array(g % 5)), "
            "repeat('the quick brown fox ', 1 + g % 8) || md5(g::text) "
            f"FROM generate_series(1, {batch}) g",
            db,
        )
    server.psql("VACUUM ANALYZE spend_logs", db)
    return int(server.psql(f"SELECT pg_database_size('{db}')"))


def baseline(server: Server, db: str, dump_args: list[str], dest: Path, fsync: bool) -> float:
    dest.unlink(missing_ok=True)
    start = time.perf_counter()
    sh(
        [
            str(server.bin / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "postgres",
            "-w",
            *dump_args,
            "-f",
            str(dest),
        ],
        env=server.env,
    )
    if fsync:
        fd = os.open(dest, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - start


def agent(server: Server, mode: str, args: dict[str, object]) -> dict[str, float]:
    dest = Path(str(args["dest"]))
    if dest.is_dir():
        shutil.rmtree(dest)
    else:
        dest.unlink(missing_ok=True)
    payload = {
        **args,
        "mode": mode,
        "host": "127.0.0.1",
        "port": server.port,
        "pwfile": str(server.pwfile),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    out = sh([sys.executable, "-c", AGENT_DUMP, str(REPO), json.dumps(payload)], env=env).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (best of)")
    parser.add_argument(
        "--compression",
        choices=["gzip", "zstd", "none"],
        help="default: zstd on PostgreSQL >= 16, else gzip (as the agent)",
    )
    parser.add_argument("--workdir", help="where the server and dumps go (default: /var/tmp)")
    args = parser.parse_args()
    print_conditions("start")
    root = Path(tempfile.mkdtemp(prefix="aistack-bench-", dir=args.workdir or "/var/tmp"))
    root.chmod(0o755)
    server = Server(root / "pg")
    server.root.mkdir()
    try:
        server.start()
        major = int(server.bin.parent.name)
        method = args.compression or ("zstd" if major >= 16 else "gzip")
        level = {"zstd": 3, "gzip": 1, "none": 0}[method]
        compress = ["-Z", str(level)] if major < 16 else [f"--compress={method}:{level}"]
        if method == "none":
            compress = ["-Z", "0"] if major < 16 else ["--compress=none"]
        dump_args = ["-Fc", *compress, "-d", "bench"]
        print(f"generating a ~{args.size_mb} MB database (PostgreSQL {major})...", flush=True)
        started = time.perf_counter()
        size = generate(server, "bench", args.size_mb)
        print(f"  {size / 2**20:.0f} MB in {time.perf_counter() - started:.0f} s", flush=True)
        files = root / "out"
        files.mkdir()
        baseline(server, "bench", dump_args, files / "warm.dump", False)  # warm the caches
        base, base_sync, dump, run = [], [], [], []
        rss = []
        agent_args = {
            "dest": str(files / "agent.dump"),
            "dump_args": dump_args,
            "db": "bench",
            "compression": method,
        }
        for _ in range(args.rounds):
            base.append(baseline(server, "bench", dump_args, files / "base.dump", False))
            result = agent(server, "dump", agent_args)
            dump.append(result["seconds"])
            rss.append((result["hwm_after"] - result["rss_before"]) / 2**20)
            base_sync.append(baseline(server, "bench", dump_args, files / "base.dump", True))
        whole = agent(server, "run", {**agent_args, "dest": str(files / "backups")})
        run.append(whole["seconds"])
        out_size = (files / "base.dump").stat().st_size
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    b, d = min(base), min(dump)
    print(
        f"aistack backup benchmark: {size / 2**20:.0f} MB database, dump {out_size / 2**20:.0f}"
        f" MB ({method}), best of {args.rounds}"
    )
    print(f"  pg_dump -Fc -f FILE       {b:7.2f} s")
    print(f"  pg_dump -Fc -f + fsync    {min(base_sync):7.2f} s")
    print(
        f"  agent dump stage          {d:7.2f} s   ratio {d / b:.3f} "
        f"(target <= {TARGET_RATIO}); vs baseline+fsync {d / min(base_sync):.3f}"
    )
    print(f"  agent peak RSS growth     {max(rss):7.1f} MB  (target <= {TARGET_RSS_MB:.0f} MB)")
    print(
        f"  agent whole run           {min(run):7.2f} s   (roles + dump + full-read verify "
        f"+ commit; {whole['hwm_after'] / 2**20 - whole['rss_before'] / 2**20:.1f} MB RSS growth)"
    )
    print_conditions("end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
