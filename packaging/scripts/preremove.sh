#!/bin/sh
# aistack pre-remove, shared by the deb (prerm) and the rpm (%preun).
# deb: $1 = remove | upgrade | deconfigure | failed-upgrade. rpm: $1 = 0 erase, 1 upgrade.
set -e

# The byte-code the post-install compiled (and any the CLI wrote, run as root) is not
# the package's: delete it on remove, and before a deb upgrade, which compiles anew. Not
# on an rpm upgrade: rpm runs the old %preun after the new %post.
case "$1" in
    remove|upgrade|0)
        find /usr/lib/aistack -depth -type d -name __pycache__ -exec rm -rf {} + \
            2>/dev/null || true
        ;;
esac

case "$1" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl stop aistack-agent.service || true
        fi
        systemctl disable aistack-agent.service >/dev/null 2>&1 || true
        ;;
esac
exit 0
