"""PostgreSQL backups: scheduled, streamed, verified, retained, restorable.

One module per concern:

- `model`      errors, run results, the protocol the API uses to trigger a run
- `sources`    where pg_dump runs: `LocalSource` (local processes) or `PodmanExecSource`
               (inside the PostgreSQL container, through the libpod API: `podman_api`)
- `dump`       the streaming pipeline: chunks -> sha256 + partial file, constant memory
- `verify`     archive header, checksums, a full read with `pg_restore -f /dev/null`
- `manifest`   what a backup is (database, versions, times, size, sha256, verified)
- `store`      the backup folder: partial folders, atomic commit, lock, state file
- `disk`       free-space floor
- `retention`  pure GFS retention over verified backups, with injected time
- `runner`     one run: lock, disk, dump, globals, verify, commit, prune
- `restore`    restore into the live or another database, dependents stopped via systemd
- `scheduler`  APScheduler 3 wiring, catch-up, manual runs, the service the daemon runs
- `watcher`    the `backups` snapshot; `metrics` the Prometheus collector; `cli` commands

Nothing here is imported by the agent until backups are used, and APScheduler only when
the scheduler starts, to keep the agent's idle RSS small.
"""
