#!/bin/sh
# Used by compose.fleet.yaml: set up once what every node of the fleet shares — the
# repository, the age identity and signing key, and a tidemark.toml whose catalog is the
# PostgreSQL `catalog` service — then take a first snapshot. The daemons and the API server
# start from it. (tidemark never writes its config while it runs: this script does, once.)
set -eu
if [ ! -f "$TIDEMARK_CONFIG" ]; then
  cd /etc/tidemark
  tidemark init --repo s3://backups/tidemark --endpoint http://s3:5000 --path-style --allow-http
  tidemark workspace add shop --database-url postgres://postgres@postgres:5432/shop --password env:SHOP_PGPASSWORD
  # The catalog (top-level keys go before the first table) and the lease timeout.
  {
    printf 'catalog = "postgres://tidemark@catalog:5432/tidemark"\n'
    printf 'catalog-password = "env:TIDEMARK_CATALOG_PASSWORD"\n'
    cat "$TIDEMARK_CONFIG"
    printf '\n[fleet]\nlease-timeout = "30s"\n'
  } > tidemark.toml.new
  mv tidemark.toml.new "$TIDEMARK_CONFIG"
  # The API server's config: the same, plus its listener (plain HTTP inside the playground).
  cp "$TIDEMARK_CONFIG" api.toml
  printf '\n[api]\nlisten = "0.0.0.0:8420"\nallow-plain-http = true\n' >> api.toml
fi
tidemark snapshot create --workspace shop --note "from docker compose (fleet)"
tidemark fleet
