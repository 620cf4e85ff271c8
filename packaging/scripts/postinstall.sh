#!/bin/sh
# aistack post-install, shared by the deb (postinst) and the rpm (%post).
# deb: $1 = configure, $2 = previously installed version (empty on first install).
# rpm: $1 = 1 on install, 2 on upgrade.
set -e

case "$1" in
    configure) if [ -z "${2:-}" ]; then action=install; else action=upgrade; fi; kind=deb ;;
    1) action=install; kind=rpm ;;
    2) action=upgrade; kind=rpm ;;
    *) exit 0 ;;
esac

# Byte-code, once, here: the agent runs with /usr read-only (ProtectSystem=strict) and
# would otherwise compile every module from source at each start (slower, and the
# compiler's garbage stays in its heap: about 0.7 MB more resident memory). The
# pre-remove script deletes it again.
python3 -m compileall -q /usr/lib/aistack >/dev/null 2>&1 || true

# The API token: generated once, 0600 root, kept across upgrades.
if ! aistack-agent --init >/dev/null; then
    echo "aistack: could not create the API token; fix /etc/aistack/agent.yaml" \
         "(aistack check-config) and run: aistack-agent --init" >&2
fi

# The folder the agent renders the stack's units into: it must exist before the agent
# starts, or its unit's ReadWritePaths=-/etc/containers/systemd leaves it read-only.
mkdir -p /etc/containers/systemd/aistack

booted=no
[ -d /run/systemd/system ] && booted=yes
if [ "$booted" = yes ]; then
    systemctl daemon-reload || true
fi

if [ "$action" = install ]; then
    # Enabled, not started: the admin reviews /etc/aistack/agent.yaml first.
    if [ "$kind" = rpm ]; then
        systemctl preset aistack-agent.service >/dev/null 2>&1 || true
    else
        systemctl enable aistack-agent.service >/dev/null 2>&1 || true
    fi
    echo "aistack: installed and enabled. Review /etc/aistack/agent.yaml, then:" \
         "systemctl start aistack-agent"
elif [ "$booted" = yes ]; then
    # Upgrade: restart the agent if it was running, so the new code takes over.
    systemctl try-restart aistack-agent.service || true
fi
exit 0
