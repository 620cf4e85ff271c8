"""Man pages and shell completion, generated from the CLIs' own argparse parsers.

Run by packaging/build.sh (`$PY packaging/docs.py`). Generating them from the parsers
means a new subcommand or option reaches `man aistack` and TAB without anyone editing a
second copy. shtab and argparse-manpage are build-time tools (the dev extras): only this
file imports them, never the agent.

Writes, under build/stage (or the folder given as the one argument):
  man/aistack.1.gz, man/aistack-agent.8.gz   gzip -n style (no name, mtime 0): reproducible
  completion/aistack.bash, completion/_aistack  bash and zsh
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import shtab
import yaml
from argparse_manpage.manpage import Manpage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from the repository root

from agent import __version__  # noqa: E402
from agent.cli import build_parser as aistack_parser  # noqa: E402
from agent.daemon import build_parser as agent_parser  # noqa: E402
from agent.stack.model import ORDER  # noqa: E402

# The requests argparse-manpage writes and the sections below add. Any other line that
# starts with "." or "'" is help text that roff would read as a request (a wrapped help
# line such as ".volume) that ..."), so it gets the zero-width escape \& in front.
REQUESTS = re.compile(r"^\.(TH|SH|SS|TP|PP|RS|RE|nf|fi|nh|UR|UE|B|I|BR|IR)( |$)")

# Completion of values only the running system knows. Each shell function prints nothing
# and says nothing when the agent or the backup folder cannot be read: TAB must never
# print an error into the command line. Services fall back to the names the CLI accepts,
# since `aistack logs` works without the agent.
SERVICES_PY = 'import json,sys; print(*json.load(sys.stdin)["services"])'
BACKUPS_PY = 'import json,sys; print(*(b["id"] for b in json.load(sys.stdin)["backups"]))'
STATIC = " ".join(ORDER)
SERVICES = {
    "bash": "_aistack_services",
    "zsh": "_aistack_services",
    "preamble": {
        "bash": f"""
# $1: the word being completed. The agent's services, else every one the CLI accepts.
_aistack_services() {{
  local names
  names=$(command aistack status --json --timeout 2 2>/dev/null \\
    | python3 -Ic '{SERVICES_PY}' 2>/dev/null)
  compgen -W "${{names:-{STATIC}}}" -- "$1"
}}
""",
        "zsh": f"""
_aistack_services() {{
  local expl
  local -a names
  names=(${{=$(command aistack status --json --timeout 2 2>/dev/null \\
    | python3 -Ic '{SERVICES_PY}' 2>/dev/null)}})
  (( $#names )) || names=({STATIC})
  _wanted services expl service compadd -a names
}}
""",
    },
}
BACKUP_IDS = {
    "bash": "_aistack_backup_ids",
    "zsh": "_aistack_backup_ids",
    "preamble": {
        "bash": f"""
# $1: the word being completed. `latest` and the ids `aistack backup list` finds.
_aistack_backup_ids() {{
  local ids
  ids=$(command aistack backup list --json 2>/dev/null \\
    | python3 -Ic '{BACKUPS_PY}' 2>/dev/null)
  compgen -W "latest $ids" -- "$1"
}}
""",
        "zsh": f"""
_aistack_backup_ids() {{
  local expl
  local -a ids
  ids=(latest ${{=$(command aistack backup list --json 2>/dev/null \\
    | python3 -Ic '{BACKUPS_PY}' 2>/dev/null)}})
  _wanted backups expl 'backup id' compadd -a ids
}}
""",
    },
}


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command tree, with its subcommand path ("backup", "restore")."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


SERVICE_ARGS = {("down", "service"), ("restart", "service"), ("logs", "service")}
BACKUP_ARGS = {("backup", "restore", "id"), ("backup", "verify", "ids")}


def mark_completions(parser: argparse.ArgumentParser) -> None:
    """Attach shtab's `.complete` to the arguments whose values live on the system (and
    files, folders). Fails the build when a service or backup argument moved or was
    renamed, rather than ship a completion that silently lost them.
    """
    marked = set()
    for path, sub in _parsers(parser):
        for action in sub._actions:
            where = (*path, action.dest)
            if where in SERVICE_ARGS:
                completer = SERVICES
            elif where in BACKUP_ARGS:
                completer = BACKUP_IDS
            elif action.metavar in ("FILE", "F") or where == ("check-config", "file"):
                completer = shtab.FILE
            elif action.metavar in ("DIR", "COMPOSE_DIR"):
                completer = shtab.DIRECTORY
            else:
                continue
            action.complete = completer  # type: ignore[attr-defined]
            marked.add(where)
    if missing := (SERVICE_ARGS | BACKUP_ARGS) - marked:
        raise SystemExit(f"docs.py: arguments not found for completion: {sorted(missing)}")


def _roff_text(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, lines kept (a .nf block)."""
    return text.replace("\\", "\\\\").replace("-", "\\-")


def _safe(page: str) -> str:
    """Escape text lines roff would take for requests (see REQUESTS)."""
    lines = page.splitlines()
    return (
        "\n".join(
            "\\&" + line if line[:1] in (".", "'") and not REQUESTS.match(line) else line
            for line in lines
        )
        + "\n"
    )


def _release_date() -> str:
    """The newest release's date, not today's: the same sources give the same page."""
    releases = yaml.safe_load((REPO / "packaging" / "changelog.yaml").read_text())
    return str(releases[0]["date"])[:10]


def _laid_out(parser: argparse.ArgumentParser) -> bool:
    """Whether the parser prints its description and epilog as written (line by line)."""
    return issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)


def _epilog_roff(parser: argparse.ArgumentParser, epilog: str) -> str:
    """An epilog as roff: kept line by line (.nf) when its parser lays it out itself."""
    text = epilog.strip("\n")
    return f".nf\n{text}\n.fi" if _laid_out(parser) else text


def manpage(
    parser: argparse.ArgumentParser,
    section: int,
    name_line: str,
    epilog_title: str,
    extra: list[tuple[str, str]],
) -> str:
    """One page: argparse-manpage's rendering, each subcommand's epilog (its exit codes)
    kept under its description, the top epilog under its own title, and `extra` sections.
    """
    # argparse-manpage wraps at the terminal's width, and roff fills again: a wide
    # "terminal" leaves the filling to roff, so usage lines are not broken twice.
    os.environ["COLUMNS"] = "10000"
    # The top parser's formatter writes every subcommand's description: it must keep the
    # .nf/.fi lines below on lines of their own.
    assert _laid_out(parser) or not any(path for path, _ in _parsers(parser))
    for path, sub in _parsers(parser):
        if path and sub.epilog:  # single-commands-section drops a subcommand's epilog
            sub.description = f"{sub.description or ''}\n.PP\n{_epilog_roff(sub, sub.epilog)}"
            sub.epilog = None
    epilog, parser.epilog = parser.epilog or "", None
    if epilog_title == "EXIT STATUS":  # the heading says it already
        epilog = epilog.removeprefix("exit codes:\n")
    if parser._subparsers is not None:  # the command list: "COMMANDS", not "POSITIONAL..."
        parser._positionals.title = "commands"
    page = Manpage(
        parser,
        {
            "project_name": "aistack",
            "version": __version__,
            "manual_section": section,
            "manual_title": "aistack manual",
            "date": _release_date(),
            "description": name_line,
        },
        format="single-commands-section",
    )
    sections = [(epilog_title, _roff_text(_epilog_roff(parser, epilog))), *extra]
    tail = "".join(f'.SH "{title}"\n{body.strip()}\n' for title, body in sections)
    head, rest = str(page).split("\n", 1)  # .TH, then no hyphenation: paths and options
    return _safe(f"{head}\n.nh\n{rest}{tail}")  # stay whole (/etc/aistack, --config)


SEE_ALSO_DOCS = (
    "The guides in\n.IR /usr/share/doc/aistack/docs/ ,\n"
    "and the Prometheus alerting rules and Grafana dashboard in\n.IR /usr/share/aistack/ ."
)
FILES = (
    ".TP\n.I /etc/aistack/agent.yaml\n"
    "The agent's configuration (\\fB$AISTACK_CONFIG\\fR or \\fB\\-\\-config\\fR chooses "
    "another); built-in defaults when it does not exist.\n"
)


def write_gz(path: Path, text: str) -> None:
    """gzip -9n: no file name, mtime 0, so two builds give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
        gz.write(text.encode())


def main(argv: list[str]) -> int:
    stage = Path(argv[1]) if len(argv) > 1 else REPO / "build" / "stage"
    cli = aistack_parser()
    write_gz(
        stage / "man" / "aistack.1.gz",
        manpage(cli, 1, "control and inspect the aistack host agent and its stack",
                "EXIT STATUS", [
                    ("FILES", FILES),
                    ("SEE ALSO", ".BR aistack\\-agent (8),\n.BR systemctl (1),\n"
                     ".BR journalctl (1),\n.BR podman (1)\n.PP\n" + SEE_ALSO_DOCS),
                ]),
    )  # fmt: skip
    write_gz(
        stage / "man" / "aistack-agent.8.gz",
        manpage(agent_parser(), 8, "the aistack host agent (a systemd service)", "NOTES", [
            ("FILES", FILES + ".TP\n.I /usr/lib/systemd/system/aistack\\-agent.service\n"
             "The unit that runs the agent: \\fBsystemctl status aistack\\-agent\\fR.\n"),
            ("SEE ALSO", ".BR aistack (1),\n.BR systemd.service (5),\n"
             ".BR journalctl (1)\n.PP\n" + SEE_ALSO_DOCS),
        ]),
    )  # fmt: skip

    completing = aistack_parser()  # a fresh one: the man page edited its texts
    mark_completions(completing)
    out = stage / "completion"
    out.mkdir(parents=True, exist_ok=True)
    (out / "aistack.bash").write_text(shtab.complete(completing, "bash"))
    (out / "_aistack").write_text(shtab.complete(completing, "zsh"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
