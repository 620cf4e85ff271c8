"""The compose fixtures and their golden output, shared by the unit and e2e tests.

Each directory under fixtures/ is one compose project: its compose files, an optional
`case.yaml` (how to run the import: files, target Podman, profiles, env files, project
name, environment, allow_lossy) and `expected/`, the golden quadlet units plus
`report.txt` (exit status and everything the import reported). Absolute paths of the
fixture directory are written as /srv/<fixture name> in the goldens, and the home
directory is /home/fixture-user, so the goldens do not depend on where the repository lives.

Regenerate after an intended change: AISTACK_UPDATE_GOLDEN=1 pytest tests/compose
(then read the diff).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.compose.cli import EX_LOSSY, EX_OK, import_compose
from agent.quadlet import PodmanVersion

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
INVALID = HERE / "invalid"
HOME = "/home/fixture-user"
UPDATE = os.environ.get("AISTACK_UPDATE_GOLDEN") == "1"


@dataclass
class Case:
    name: str
    directory: Path
    files: list[str]
    target: PodmanVersion
    profiles: list[str] = field(default_factory=list)
    env_files: list[str] | None = None
    project_name: str | None = None
    environ: dict[str, str] = field(default_factory=dict)
    allow_lossy: bool = False
    description: str = ""

    @property
    def expected(self) -> Path:
        return self.directory / "expected"

    def public(self, text: str) -> str:
        """Output with this machine's fixture path replaced by the stable one."""
        return text.replace(str(self.directory), f"/srv/{self.name}")


def load_case(directory: Path) -> Case:
    spec: dict[str, Any] = {}
    if (directory / "case.yaml").is_file():
        spec = yaml.safe_load((directory / "case.yaml").read_text()) or {}
    files = spec.get("files")
    if files is None:
        files = [
            n
            for n in ("compose.yaml", "docker-compose.yml", "compose.yml")
            if (directory / n).is_file()
        ][:1]
    return Case(
        name=directory.name,
        directory=directory,
        files=list(files),
        target=PodmanVersion.parse(str(spec.get("target", "5.0"))),
        profiles=list(spec.get("profiles") or []),
        env_files=spec.get("env_files"),
        project_name=spec.get("project_name"),
        environ={str(k): str(v) for k, v in (spec.get("environ") or {}).items()},
        allow_lossy=bool(spec.get("allow_lossy", False)),
        description=str(spec.get("description", "")),
    )


def cases(root: Path = FIXTURES) -> list[Case]:
    return [load_case(d) for d in sorted(root.iterdir()) if d.is_dir()]


def run(case: Case) -> tuple[dict[str, str], str]:
    """Convert the fixture: {unit file name: text}, and report.txt's text."""
    result = import_compose(
        [case.directory / f for f in case.files],
        environ={"HOME": HOME, **case.environ},
        target=case.target,
        profiles=case.profiles,
        env_files=[case.directory / f for f in case.env_files]
        if case.env_files is not None
        else None,
        project_name=case.project_name,
    )
    exit_code = EX_LOSSY if result.report.lossy and not case.allow_lossy else EX_OK
    units = {u.name: case.public(u.render()) for u in result.units}
    report = f"exit {exit_code} (target Podman {result.target})\n"
    rendered = result.report.render()
    report += case.public(rendered) + ("\n" if rendered else "")
    return units, report


def read_expected(case: Case) -> tuple[dict[str, str], str]:
    units = {
        p.name: p.read_text() for p in sorted(case.expected.iterdir()) if p.name != "report.txt"
    }
    return units, (case.expected / "report.txt").read_text()


def write_expected(case: Case, units: dict[str, str], report: str) -> None:
    case.expected.mkdir(exist_ok=True)
    for old in case.expected.iterdir():
        old.unlink()
    for name, text in units.items():
        (case.expected / name).write_text(text)
    (case.expected / "report.txt").write_text(report)


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", ";": ";"}


def exec_argv(line: str) -> list[str]:
    """The argv systemd runs for a generated `ExecStart=` value: words split with quotes
    and C escapes, then `%%` -> `%` and `$$` -> `$` (no other specifier or variable may
    appear in a generated line, so any other `%` or `$` fails the test)."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word, quote = [], None
        while i < n and (quote or line[i] not in " \t"):
            ch = line[i]
            if ch == "\\" and i + 1 < n:
                nxt = line[i + 1]
                if nxt == "x":
                    word.append(chr(int(line[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(_C_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if quote and ch == quote:
                quote = None
            elif not quote and ch in "\"'":
                quote = ch
            else:
                word.append(ch)
            i += 1
        words.append(_unescape("".join(word)))
    return words


_QUADLET_OWN = frozenset({"--cidfile=%t/%N.cid"})  # specifiers quadlet itself writes


def _unescape(word: str) -> str:
    if word in _QUADLET_OWN:
        return word
    out, i = [], 0
    while i < len(word):
        if word[i] in "%$":
            assert word[i + 1 : i + 2] == word[i], f"unescaped {word[i]} in {word!r}"
            out.append(word[i])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def service_exec_starts(dryrun_stdout: str) -> dict[str, list[str]]:
    """service name -> argv of its ExecStart=, from `quadlet -dryrun` output."""
    result: dict[str, list[str]] = {}
    service = ""
    for line in dryrun_stdout.splitlines():
        if line.startswith("---") and line.endswith("---"):
            service = line.strip("-")
        elif line.startswith("ExecStart="):
            result[service] = exec_argv(line[len("ExecStart=") :])
    return result


# Exact argv values the quoting fixtures must reach podman with, after quadlet and systemd.
ROUNDTRIP: dict[str, dict[str, list[str]]] = {
    "33-quoting-specials": {
        "33-quoting-specials-specials.service": [
            "--workdir",
            "/srv/50%off",
            "--env",
            "BACKSLASH=C:\\path\\to",
            "--env",
            "DOLLARS=$HOME ${HOME} costs $5",
            "--env",
            "PERCENT_SPEC=%h %n 50%",
            "--env",
            "SEMICOLON=a;b; c",
            "--env",
            "TABS_AND_QUOTES=a\tb \"c\" 'd'",
            "--env",
            "UNICODE=grüße \u2013 ☃",
            "--label",
            "percent=100%",
            "--label",
            "traefik.http.routers.x.rule=Host(`x.example.com`) && PathPrefix(`/api`)",
            "--health-cmd",
            "wget -qO- http://localhost:80/%7E || exit 1",
            "docker.io/library/alpine",
            "sh",
            "-c",
            'echo "$1" 100% done',
            "arg with spaces",
        ],
    },
    "04-command-entrypoint": {
        "04-command-entrypoint-string-forms.service": [
            "--entrypoint",
            '["/usr/bin/env","LANG=C.UTF-8"]',
            "docker.io/library/alpine:3.20",
            "printf",
            "%s|%s\\n",
            "hello world",
            "it's $HOME at 100%",
        ],
        "04-command-entrypoint-list-forms.service": [
            "--entrypoint",
            '["/bin/sh","-c"]',
            "docker.io/library/alpine:3.20",
            "echo \"$0\" 'a b' && exit 0",
            "tab\there",
        ],
    },
    "05-environment": {
        "05-environment-as-map.service": [
            "--env",
            "MULTILINE=line one\nline two",
            "--env",
            "QUOTED=\"double\" and 'single'",
        ],
    },
    "14-healthcheck-forms": {
        "14-healthcheck-forms-string.service": [
            "--health-cmd",
            '["/bin/sh","-c","test -f /tmp/ready && echo \\"ok: 100%\\""]',
        ],
        "14-healthcheck-forms-multiline.service": [
            "--health-cmd",
            '["/bin/sh","-c","set -e\\ntest -f /tmp/ready"]',
        ],
    },
}


def argv_problems(argv: list[str], expected: list[str]) -> list[str]:
    """What of `expected` (option/value pairs, then the image and its arguments) is not
    in `argv`: each pair must appear side by side, the tail must end argv."""
    problems = []
    i = 0
    while i < len(expected):
        if expected[i].startswith("--") and i + 1 < len(expected):
            pair = expected[i : i + 2]
            if not any(argv[k : k + 2] == pair for k in range(len(argv) - 1)):
                problems.append(f"missing {pair!r}")
            i += 2
            continue
        tail = expected[i:]
        if argv[-len(tail) :] != tail:
            problems.append(f"argv ends {argv[-len(tail) :]!r}, expected {tail!r}")
        break
    return problems
