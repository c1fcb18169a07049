#!/bin/sh
# Start BIND 9 as nicupdate's primary, in the foreground, logging to stderr.
#
# On the first start: make the TSIG key nicupdate signs its updates with
# (/etc/bind/keys/ddns-key.conf, readable by named and by the nicupdate container's
# group, NICUPDATE_GID, 8245), and copy each starting zone file from /etc/bind/zones
# into /var/lib/bind. Later starts keep both: named owns the zones and their journals.
set -eu

keys=/etc/bind/keys
key="$keys/ddns-key.conf"
if [ ! -s "$key" ]; then
    (umask 077 && tsig-keygen -a "${TSIG_ALGORITHM:-hmac-sha256}" "${TSIG_KEY_NAME:-ddns-key}" >"$key.new")
    mv "$key.new" "$key"
    echo "made the TSIG key $key"
fi
chown bind:"${NICUPDATE_GID:-8245}" "$keys" "$key"
chmod 0750 "$keys"
chmod 0640 "$key"

for zone in /etc/bind/zones/*.zone; do
    [ -e "$zone" ] || continue
    target="/var/lib/bind/$(basename "$zone")"
    if [ ! -e "$target" ]; then
        cp "$zone" "$target"
        echo "started $target from $zone"
    fi
done
chown -R bind:bind /var/lib/bind

# rndc (e.g. `rndc freeze ZONE` before editing a zone by hand) with a key of this container.
[ -s /etc/bind/rndc.key ] || rndc-confgen -a -u bind >/dev/null 2>&1
install -d -o bind -g bind /run/named

named-checkconf /etc/bind/named.conf
exec named -g -u bind -c /etc/bind/named.conf "$@"
