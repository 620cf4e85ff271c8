#!/bin/sh
# aistack post-remove, shared by the deb (postrm) and the rpm (%postun).
# deb: $1 = remove | purge | upgrade | ... rpm: $1 = 0 erase, 1 upgrade.
# Remove keeps config and /var/lib/aistack. Purge (deb) removes config, never backups.
set -e

case "$1" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
        fi
        ;;
    purge)
        # dpkg purges the conffile (agent.yaml) itself; the token and generated
        # secrets are the agent's own files in the same folder.
        rm -f /etc/aistack/api-token
        rm -rf /etc/aistack/secrets
        rmdir /etc/aistack 2>/dev/null || true
        if [ -d /var/lib/aistack ]; then
            echo "aistack: purged the configuration. State and backups are kept in" \
                 "/var/lib/aistack (backups under /var/lib/aistack/backups by default);" \
                 "delete that folder yourself once you no longer need them." >&2
        fi
        ;;
esac
exit 0
