#!/bin/sh
# Used by compose.yaml: set tidemark up once (the identity and the catalog stay in the
# volume), take a snapshot of the shop database, list what the repository holds, then run
# the daemon (daily snapshots at 02:00 UTC, retention after each) until `docker compose stop`.
set -eu
if [ ! -f "$TIDEMARK_CONFIG" ]; then
  tidemark init --repo s3://backups/tidemark --endpoint http://s3:5000 --path-style --allow-http
  tidemark workspace add shop --database-url postgres://postgres@postgres:5432/shop --password env:SHOP_PGPASSWORD
fi
tidemark snapshot create --workspace shop --note "from docker compose"
tidemark snapshot list --workspace shop
exec tidemark serve --log-format json --shutdown-timeout 20s
