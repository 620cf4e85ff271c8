#!/usr/bin/env bash
# Build dist/aistack_<version>_all.deb or dist/aistack-<version>-1.noarch.rpm.
# Usage: packaging/build.sh deb|rpm   (make deb / make rpm)
set -euo pipefail
format=${1:?usage: build.sh deb|rpm}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
PY=${PY:-.venv/bin/python}
NFPM=${NFPM:-.venv/bin/nfpm}

# AISTACK_VERSION overrides the package version (the e2e upgrade test builds two).
VERSION=${AISTACK_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' agent/__init__.py)}
STAGE=build/stage  # fixed path: nfpm expands no variables in contents
export VERSION STAGE
# One build at a time in this checkout (the staging folder is shared): the packaging
# tests and an e2e session's deb may build at once.
mkdir -p build
exec 9>build/.stage.lock
flock 9
rm -rf "$STAGE"
mkdir -p "$STAGE/usr/lib/aistack" dist

echo "== staging agent $VERSION for $format"
# Python sources only: no caches, no tests. The post-install script compiles the byte-code.
find agent -name '*.py' -print0 | while IFS= read -r -d '' f; do
    install -D -m 0644 "$f" "$STAGE/usr/lib/aistack/$f"
done

if [ "$format" = rpm ]; then
    # Fedora has no current python3-structlog: bundle the pinned one privately.
    src=$("$PY" -c 'import os, structlog; print(os.path.dirname(structlog.__file__))')
    find "$src" -name '*.py' -o -name 'py.typed' | while read -r f; do
        install -D -m 0644 "$f" "$STAGE/usr/lib/aistack/structlog/${f#"$src"/}"
    done
fi

echo "== man pages and shell completion, from the CLIs' parsers"
"$PY" packaging/docs.py "$STAGE"

config=packaging/nfpm.yaml
if [ "$format" = deb ]; then
    # Debian's changelog format, from the same release notes.
    "$PY" - packaging/changelog.yaml "$STAGE/changelog.Debian" <<'PYEOF'
import sys
from datetime import datetime

import yaml

out = []
for rel in yaml.safe_load(open(sys.argv[1])):
    when = datetime.fromisoformat(str(rel["date"]).replace("Z", "+00:00"))
    out.append(f"aistack ({rel['semver']}) unstable; urgency=medium\n")
    out += [f"  * {change['note']}" for change in rel["changes"]]
    out.append(f"\n -- {rel['packager']}  {when.strftime('%a, %d %b %Y %H:%M:%S %z')}\n")
open(sys.argv[2], "w").write("\n".join(out))
PYEOF
    gzip -9n "$STAGE/changelog.Debian"
    config=build/nfpm-deb.yaml
    sed '/^changelog:/d' packaging/nfpm.yaml > "$config"
else
    # docs/ as %doc, one entry per file (nfpm expands no glob in a doc-typed entry).
    for f in docs/*; do
        printf '  - {src: "%s", dst: "/usr/share/doc/aistack/%s", type: doc, packager: rpm, file_info: {mode: 0644}}\n' "$f" "$f"
    done > build/rpm-docs.yaml
    config=build/nfpm-rpm.yaml
    sed '/# @rpm-docs@/r build/rpm-docs.yaml' packaging/nfpm.yaml > "$config"
fi

echo "== nfpm package --packager $format"
"$NFPM" package --config "$config" --packager "$format" --target dist/
ls -l dist/
