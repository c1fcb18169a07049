#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it:
# format check, lint, type check, tests with coverage, and a short benchmark run.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k dialect`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: dig (bind9-dnsutils) for the DNS checks, PostgreSQL for the
# portability tests, wrk for the benchmark, systemd-analyze and systemd-sysusers (systemd)
# to verify the client's timer units and the server's unit (deploy/systemd; its test
# also needs unshare from util-linux), ip (iproute2) for the client's interface source,
# and BIND and PowerDNS as primaries for the RFC 2136 tests.
need=()
# Python 3.11+ with venv (Debian splits ensurepip into python3-venv).
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v dig >/dev/null 2>&1 && command -v nsupdate >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# curl runs the demo's printed update line against the installed wheel (tests/deploy).
command -v curl >/dev/null 2>&1 || need+=(curl)
# Real primaries for the rfc2136 backend: BIND 9 and PowerDNS (with its SQLite backend).
[ -x /usr/sbin/named ] || need+=(bind9)
[ -x /usr/sbin/pdns_server ] || need+=(pdns-server)
[ -e /usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql ] || need+=(pdns-backend-sqlite3)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# Real secondaries following a primary by NOTIFY and IXFR: Knot DNS and NSD (and BIND,
# above) run the shipped deploy/secondaries examples (tests/server/secondaries.py).
[ -x /usr/sbin/knotd ] || need+=(knot)
[ -x /usr/sbin/nsd ] || need+=(nsd)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# dnsperf loads the built-in DNS, NSD and Knot alike (tests/benchmarks/bench_dns.py).
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
# Router-script clients that half-close their connection (the half-close tests), and
# prlimit (util-linux) for the abuse benchmark's descriptor limit.
command -v nc.openbsd >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
# ddclient as Debian ships it, running the README's configurations (tests/server/test_ddclient.py).
command -v ddclient >/dev/null 2>&1 || need+=(ddclient)
# The container image and compose files (tests/deploy/test_container.py), and systemd
# booted in a container for the server's unit (tests/deploy/test_service.py): podman as
# root on runc, and debootstrap for a Debian base image, since no registry is reachable.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# TLS reverse proxies running the shipped deploy/caddy and deploy/nginx examples, and
# openssl for nginx's test certificate (tests/server/test_reverse_proxy.py).
command -v caddy >/dev/null 2>&1 || need+=(caddy)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# promtool checks the /metrics page and a real Prometheus scrapes it (test_metrics.py).
[ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ] || need+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
# A real load balancer in front of several instances on one PostgreSQL (test_instances.py).
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
# Let's Encrypt's test CA and an ACME client: a wildcard certificate through the
# acme-dns API (tests/server/test_acme.py, tests/server/acme_ca.py).
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v lego >/dev/null 2>&1 || need+=(lego)
# certbot with its rfc2136 plugin, as Debian ships them: a wildcard certificate through
# DNS UPDATE messages to the DNS port (tests/server/rfc2136in/test_acme_clients.py).
[ -x /usr/bin/certbot ] || need+=(certbot)
[ -d /usr/lib/python3/dist-packages/certbot_dns_rfc2136 ] || need+=(python3-certbot-dns-rfc2136)
# The web UI in a real browser (tests/server/web, Playwright with Debian's Chromium; no
# browser download), its pages checked by an HTML checker (tidy), and Lighthouse and
# axe-core from npm (tests/browser/package.json) on Node.js.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v tidy >/dev/null 2>&1 || need+=(tidy)
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing ${need[*]}: run as root or 'sudo apt-get install ${need[*]}'" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # bind9, pdns-server, knot and nsd start system daemons on port 53 when installed (nginx
  # and caddy on 80 and 443, ddclient its updater, prometheus its server and node exporter
  # on 9090 and 9100, haproxy its default service); the tests run their own, so stop the
  # ones just installed.
  for daemon in named pdns knot nsd nginx caddy ddclient prometheus prometheus-node-exporter haproxy; do
    if command -v service >/dev/null 2>&1; then service "$daemon" stop >/dev/null 2>&1 || true; fi
  done
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[server,postgres,lexicon,test]'
# Lighthouse and axe-core at the versions of tests/browser/package-lock.json.
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== ruff check";          .venv/bin/ruff check .
echo "== mypy --strict";       .venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest --cov --cov-report=term "$@"
echo "== benchmark: update server (quick run)"
.venv/bin/python tests/benchmarks/bench_update.py --quick
echo "== benchmark: rfc2136 against BIND (quick run)"
.venv/bin/python tests/benchmarks/bench_rfc2136.py --quick
echo "== benchmark: floods of guesses and idle connections (quick run)"
.venv/bin/python tests/benchmarks/bench_abuse.py --quick
echo "== benchmark: many hosts, admin changes, workers (quick run)"
.venv/bin/python tests/benchmarks/bench_scale.py --quick
echo "== benchmark: built-in DNS against NSD and Knot (quick run)"
.venv/bin/python tests/benchmarks/bench_dns.py --quick
echo "== benchmark: updates with a BIND secondary (quick run)"
.venv/bin/python tests/benchmarks/bench_secondary.py --quick
echo "== benchmark: web UI pages in Lighthouse (quick run)"
.venv/bin/python tests/benchmarks/bench_web.py --quick
