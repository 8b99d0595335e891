# syntax=docker/dockerfile:1
#
# coatcheck container image.
#
#   docker build -t coatcheck .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/my-config.yaml:/etc/coatcheck/config.yaml:ro" \
#     -e COATCHECK_SECRET=... coatcheck
#
# The config is mounted at the fixed path /etc/coatcheck/config.yaml (COATCHECK_CONFIG below;
# the CLI falls back to it when --config is not given). Inside a container the config must
# listen on 0.0.0.0, not 127.0.0.1, to be reachable through the published port.
# The CLI handles SIGTERM itself (clean exit 0), so node can run as PID 1; `docker run
# --init` adds zombie reaping if you want it.
# SIGHUP (`docker kill -s HUP <container>`) reloads the mounted config (README "Live reload").
#
# Both stages use Node 24 LTS on Debian bookworm (slim). Pin by digest in production.

# ---- build: install every dependency and compile TypeScript to dist/ ----
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the root "prepare" script runs the build, and src/ is not copied yet.
# No dependency needs an install script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY config ./config
RUN npm run build

# ---- runtime: production dependencies, compiled output, example configs ----
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config

# Files stay owned by root (read-only for the service); the process runs as the image's
# unprivileged `node` user (uid 1000).
USER node
ENV COATCHECK_CONFIG=/etc/coatcheck/config.yaml
EXPOSE 8080

# Health: `coatcheck healthcheck` asks the admin listener the configuration names (admin.listen,
# e.g. ":9090") for GET /healthz; the slim image has no curl. Without an admin listener the
# container reports unhealthy and says why (docker inspect). The admin listener also answers
# /readyz (the store answers; 503 while draining or when it does not) and /metrics (Prometheus);
# orchestrators probe it on a non-loopback address such as ":9090": do not publish that port to
# the public. Kubernetes ignores HEALTHCHECK and uses its own probes (deploy/kubernetes/).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["node", "/app/dist/cli.js", "healthcheck"]

ENTRYPOINT ["node", "/app/dist/cli.js"]
