#!/bin/sh
# Prepares this machine as a host-linux-amd64-local worker and starts its
# buildlet in listen mode on loopback.
#
#   ALMANAC         the almanac binary (default: almanac on PATH)
#   BUILDLET_KEY    file holding this host type's key (the coordinator
#                   derives it from its master key; see `almanac buildlet --help`)
#   BUILDLET_ADDR   where to listen (default 127.0.0.1:5936)
#   WORKDIR         the work directory (default: $TMPDIR/workdir-host-linux-amd64-local)
set -eu

host_type=host-linux-amd64-local
almanac=${ALMANAC:-almanac}
key=${BUILDLET_KEY:?set BUILDLET_KEY to the file holding the host key}
addr=${BUILDLET_ADDR:-127.0.0.1:5936}
workdir=${WORKDIR:-${TMPDIR:-/tmp}/workdir-$host_type}

# What builds on this host type need: a shell, git and tar are assumed;
# Go's own builds also need a bootstrap toolchain at GOROOT_BOOTSTRAP.
for tool in sh tar git; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

mkdir -p "$workdir"
exec "$almanac" buildlet \
    --listen "$addr" \
    --host-type "$host_type" \
    --key-file "$key" \
    --workdir "$workdir"
