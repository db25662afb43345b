#!/usr/bin/env bash
# Builds a stand-in for the official node:<version>-bookworm-slim image, locally, for machines
# that reach no image registry: Debian bookworm (debootstrap --variant=minbase, from Debian's
# package mirror), the official Node.js build (from the npm registry, scripts/node-runtime.sh)
# and the machine's npm in /usr/local like the official image, and the `node` user (uid 1000).
#   scripts/image-base.sh [node version]   -> prints the image name, e.g. localhost/bff-node-base:24.22.3
# Needs root, buildah and debootstrap. Idempotent: an existing image of that name is reused.
# BUILD_CA_FILE (default: npm's cafile on this machine, if set): a CA bundle that npm inside the
# image build trusts (global npmrc `cafile`), for machines that reach the npm registry through a
# TLS-inspecting proxy. Only npm uses it; node and the gateway do not (no NODE_EXTRA_CA_CERTS).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-24.22.3}"
image="localhost/bff-node-base:$version"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"

if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

node_bin="$(scripts/node-runtime.sh "$version")"
npm_dir="$(npm root -g)/npm"
ca_file="${BUILD_CA_FILE-$(npm config get cafile 2>/dev/null || true)}"
[ "$ca_file" != null ] && [ "$ca_file" != undefined ] || ca_file=""
[ -f "$npm_dir/bin/npm-cli.js" ] || { echo "image-base: no npm at $npm_dir" >&2; exit 1; }

root="$(mktemp -d /var/tmp/bff-node-base.XXXXXX)"
ctr=""
cleanup() {
  [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

echo "image-base: debootstrap bookworm (minbase) from $mirror" >&2
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

# Node and npm where the official image has them.
install -m 0755 "$node_bin/node" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
if [ -n "$ca_file" ] && [ -f "$ca_file" ]; then
  install -m 0644 "$ca_file" "$root/etc/ssl/certs/build-ca.crt"
  mkdir -p "$root/usr/local/etc"
  echo 'cafile=/etc/ssl/certs/build-ca.crt' >"$root/usr/local/etc/npmrc"
fi
# The official image's unprivileged user.
echo 'node:x:1000:1000::/home/node:/bin/sh' >>"$root/etc/passwd"
echo 'node:x:1000:' >>"$root/etc/group"
echo 'node:*:19000:0:99999:7:::' >>"$root/etc/shadow"
install -d -o 1000 -g 1000 "$root/home/node"

ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
tar -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . | tar -C "$mnt" -xf -
buildah umount "$ctr" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$version" \
  --cmd node \
  --label org.opencontainers.image.description="local stand-in for node:$version-bookworm-slim" \
  "$ctr"
buildah commit --quiet "$ctr" "$image" >/dev/null
echo "$image"
