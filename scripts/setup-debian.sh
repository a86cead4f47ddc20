#!/usr/bin/env bash
# Installs what tidemark's demo and tests need on Debian/Ubuntu, skipping what is there:
# the PostgreSQL server binaries (initdb, pg_ctl, pg_dump, psql, contrib extensions),
# the age, zstd, openssl, jq and tar command-line tools, promtool (the prometheus package),
# moto (a local S3 server) for the S3 tests, schemathesis, which tests the served API
# against its OpenAPI document, and for the web console's browser tests Debian's chromium,
# Playwright for Python (driving that chromium: its own browser download is never used)
# and axe-core (accessibility checks, from npm into /opt/tidemark-test), and Azurite (a
# local Azure Blob Storage server, from npm into /opt/tidemark-test, linked as azurite-blob).
# Run as root (or with sudo). Safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
bindir=$(pg_config --bindir 2>/dev/null || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need_apt+=(postgresql postgresql-contrib); fi
fi
command -v age >/dev/null 2>&1 || need_apt+=(age)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
# A signature checked by hand (README "Restoring by hand"), as a test does.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
# An export bundle read by hand (README "Export and import"), as a test does.
command -v tar >/dev/null 2>&1 || need_apt+=(tar)
# promtool checks the metrics and the contrib alert rules (Debian ships it in prometheus).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server] (local S3 server for the tests)"
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "installing schemathesis (checks the served API against its OpenAPI document)"
  python3 -m pip install --quiet 'schemathesis>=4,<5' || python3 -m pip install --quiet --break-system-packages 'schemathesis>=4,<5'
fi

if ! python3 -c 'import playwright' >/dev/null 2>&1; then
  echo "installing playwright for Python (drives Debian's chromium in the console's browser tests)"
  python3 -m pip install --quiet playwright || python3 -m pip install --quiet --break-system-packages playwright
fi

if [ ! -s /opt/tidemark-test/node_modules/axe-core/axe.min.js ]; then
  echo "installing axe-core into /opt/tidemark-test (accessibility checks of the console)"
  $SUDO mkdir -p /opt/tidemark-test
  (cd /opt/tidemark-test && $SUDO npm install --silent --no-audit --no-fund axe-core@4 >/dev/null)
fi

if [ ! -x /opt/tidemark-test/node_modules/.bin/azurite-blob ]; then
  echo "installing Azurite into /opt/tidemark-test (a local Azure Blob Storage server for the tests)"
  $SUDO mkdir -p /opt/tidemark-test
  (cd /opt/tidemark-test && $SUDO npm install --silent --no-audit --no-fund azurite@3 >/dev/null)
fi
if ! command -v azurite-blob >/dev/null 2>&1; then
  $SUDO ln -sf /opt/tidemark-test/node_modules/.bin/azurite-blob /usr/local/bin/azurite-blob
fi

# Postgres refuses to run as root; tidemark then runs it as the `postgres` OS user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
zstd_version=$(zstd --version | grep -o 'v[0-9][0-9.]*' | head -n 1)
echo "ready: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1), age $(age --version), zstd ${zstd_version:-(version unknown)}"
