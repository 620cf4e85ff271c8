#!/bin/sh
# aistack pre-remove, shared by the deb (prerm) and the rpm (%preun).
# deb: $1 = remove | upgrade | deconfigure | failed-upgrade. rpm: $1 = 0 erase, 1 upgrade.
set -e

case "$1" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl stop aistack-agent.service || true
        fi
        systemctl disable aistack-agent.service >/dev/null 2>&1 || true
        ;;
esac
exit 0
