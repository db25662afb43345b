# syntax=docker/dockerfile:1
# bff-gateway container image.
#   docker build -t bff-gateway .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/gateway.yaml:/etc/bff-gateway/gateway.yaml:ro" \
#     -e OIDC_CLIENT_SECRET -e SESSION_SECRET -e SESSION_KEY bff-gateway
#   docker run --rm -v "$PWD/gateway.yaml:/etc/bff-gateway/gateway.yaml:ro" bff-gateway check
# In the mounted file use listen.host 0.0.0.0; for probes from outside the container also set
# admin.host 0.0.0.0 (and do not publish the admin port to the public network).
# Built and smoke-tested (health, readiness, a full login) by `npm run image:test`, with buildah
# and a locally assembled base image (scripts/image-base.sh) passed as NODE_IMAGE.

# Node 24 LTS, Debian bookworm: the production runtime. Any image with node, npm and a `node`
# user works (--build-arg NODE_IMAGE=...); pin a digest for reproducible builds.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full dependency tree, TypeScript -> dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts are skipped here because `prepare` builds, and the sources are not copied yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, compiled code, unprivileged user ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    BFF_CONFIG=/etc/bff-gateway/gateway.yaml \
    BFF_HEALTH_URL=http://127.0.0.1:9090/healthz
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would try to compile, which the build stage already did.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY config/gateway.example.yaml config/schema.json ./config/
RUN mkdir -p /etc/bff-gateway && chown -R root:root /app && chmod -R a-w /app

USER node
EXPOSE 8080 9090
# Needs the admin listener (admin: in the configuration); slim images have no curl, node has fetch.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.BFF_HEALTH_URL).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node runs as PID 1 and handles SIGTERM itself (graceful shutdown within shutdownGrace).
ENTRYPOINT ["node", "bin/bff-gateway.js"]
CMD []
