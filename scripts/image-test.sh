#!/usr/bin/env bash
# `npm run image:test`: builds the Dockerfile without Docker and smoke-tests the image.
#  1. installs buildah and debootstrap with apt when missing (needs root),
#  2. assembles a local base image (scripts/image-base.sh: Debian bookworm minbase + the
#     official Node build) because no image registry is reachable here,
#  3. builds the Dockerfile with buildah (vfs storage, chroot isolation), NODE_IMAGE pointing at
#     that base; `npm ci` inside the build reaches the npm registry,
#  4. runs the image (scripts/image-smoke.ts): check, /healthz, /readyz, a full login, logout,
#     the HEALTHCHECK command, SIGTERM.
# NODE_VERSION (default 24.22.3) picks the Node build; IMAGE the tag built (default
# localhost/bff-gateway:test); IMAGE_REF a git revision to build instead of the working tree
# (e.g. IMAGE_REF=HEAD: the committed sources, exported with git archive).
# Not part of `npm test`: it takes minutes and needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
node_version="${NODE_VERSION:-24.22.3}"
export IMAGE="${IMAGE:-localhost/bff-gateway:test}"

if [ "$(id -u)" -ne 0 ]; then
  echo "image:test needs root (buildah with chroot isolation, debootstrap)" >&2
  exit 1
fi
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

started=$SECONDS
base="$(scripts/image-base.sh "$node_version")"
echo "base image: $base ($((SECONDS - started))s)"

context=.
if [ -n "${IMAGE_REF:-}" ]; then
  context="$(mktemp -d /var/tmp/bff-image-context.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  git archive "$IMAGE_REF" | tar -x -C "$context"
  echo "building $(git rev-parse --short "$IMAGE_REF") ($IMAGE_REF)"
fi

started=$SECONDS
buildah build --pull-never --format docker --layers=false \
  --build-arg NODE_IMAGE="$base" -t "$IMAGE" -f "$context/Dockerfile" "$context"
echo "built $IMAGE in $((SECONDS - started))s"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"

node --import tsx scripts/image-smoke.ts
