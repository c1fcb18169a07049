#!/bin/sh
# Create the zone nicupdate updates in PowerDNS (gsqlite3 backend, see pdns.conf), and a
# TSIG key that may update it (RFC 2136) and transfer it (AXFR, nicupdate's drift check).
# Run once, as root, before starting pdns. Every setting below can be overridden from the
# environment, e.g. `ZONE=dyn.example.org sh setup.sh`.
#
# The key's base64 secret goes to SECRET_FILE, the file nicupdate's tsig_secret_file
# names. When SECRET_FILE already exists, its secret is imported instead of a new one.
set -eu

CONFIG_DIR=${CONFIG_DIR:-/etc/powerdns}
ZONE=${ZONE:-dyn.example.com}
NAMESERVER=${NAMESERVER:-ns1.example.com.}
HOSTMASTER=${HOSTMASTER:-hostmaster.example.com.}
KEY_NAME=${KEY_NAME:-ddns-key}
ALGORITHM=${ALGORITHM:-hmac-sha256}
SECRET_FILE=${SECRET_FILE:-/etc/nicupdate/$KEY_NAME.secret}
SCHEMA=${SCHEMA:-/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql}

pdnsutil() { command pdnsutil --config-dir="$CONFIG_DIR" "$@"; }

# The database named in pdns.conf; created from the schema the first time.
database=$(sed -n 's/^gsqlite3-database=//p' "$CONFIG_DIR/pdns.conf")
if [ ! -s "$database" ]; then
    sqlite3 "$database" < "$SCHEMA"
    # pdns runs as the pdns user on Debian and writes the database (and its directory).
    if id pdns >/dev/null 2>&1; then chown pdns:pdns "$database"; fi
fi

if ! pdnsutil list-zone "$ZONE" >/dev/null 2>&1; then
    pdnsutil create-zone "$ZONE" "$NAMESERVER"
    # Serial 1, refresh 1 h, retry 10 min, expire 14 d, negative answers cached 60 s.
    pdnsutil replace-rrset "$ZONE" @ SOA 60 "$NAMESERVER $HOSTMASTER 1 3600 600 1209600 60"
fi

if [ ! -s "$SECRET_FILE" ]; then
    mkdir -p "$(dirname "$SECRET_FILE")"
    (umask 077 && head -c 32 /dev/urandom | base64 > "$SECRET_FILE")
fi
pdnsutil import-tsig-key "$KEY_NAME" "$ALGORITHM" "$(cat "$SECRET_FILE")"

# The key may update the zone; each update raises the SOA serial.
pdnsutil set-meta "$ZONE" TSIG-ALLOW-DNSUPDATE "$KEY_NAME"
pdnsutil set-meta "$ZONE" SOA-EDIT-DNSUPDATE INCREASE
# The key may transfer the zone.
pdnsutil set-meta "$ZONE" TSIG-ALLOW-AXFR "$KEY_NAME"

echo "zone $ZONE: updates and transfers allowed with TSIG key $KEY_NAME ($ALGORITHM);"
echo "its secret is in $SECRET_FILE"
