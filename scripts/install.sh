#!/bin/sh
# Builds tidemark (release profile: no debug info) and installs it as
# $PREFIX/bin/tidemark (default /usr/local/bin), the one place where you, root and the
# Postgres server's OS user (which runs `tidemark wal push` and `wal fetch`) all find it.
# As root it installs directly; otherwise through sudo. The first build takes 15-25
# minutes on 2 cores (a binary of about 53 MiB).
#
#   scripts/install.sh            # build and install
#   PREFIX=/opt/tidemark scripts/install.sh
set -eu
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
target=$prefix/bin/tidemark

built=${CARGO_TARGET_DIR:-target}/release/tidemark

cargo build --release --locked

if [ "$(id -u)" -eq 0 ]; then
    install -d -m 755 "$prefix/bin"
    install -m 755 "$built" "$target"
else
    sudo install -d -m 755 "$prefix/bin"
    sudo install -m 755 "$built" "$target"
fi
echo "installed $target ($("$target" --version))"

# Another copy earlier in PATH (a `cargo install` in ~/.cargo/bin) would be what
# `tidemark` runs in your shell while the server runs this one.
found=$(command -v tidemark || true)
if [ -n "$found" ] && [ "$found" != "$target" ]; then
    echo "note: \`tidemark\` in this shell is $found, not $target:"
    echo "      remove it (cargo uninstall tidemark) or put $prefix/bin first in PATH"
fi
