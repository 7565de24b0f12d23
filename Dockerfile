# goldrush-follower container image.
#
#   docker build -t goldrush-follower .
#   docker run --rm -v follower-state:/var/lib/follower \
#     -v "$PWD/follower.toml:/etc/follower/follower.toml:ro" \
#     -v "$PWD/service-key:/var/run/secrets/goldrush/service-key:ro" \
#     -e GOLDRUSH_SERVICE_KEY_FILE=/var/run/secrets/goldrush/service-key goldrush-follower
#
# The ServiceKey is never part of the image: it comes at run time from GOLDRUSH_SERVICE_KEY or,
# better, a mounted file named by GOLDRUSH_SERVICE_KEY_FILE (re-read when it is rotated).
# scripts/check-image lints this file, builds it with buildah and runs it against the simulator.
#
# Base: Debian 12 (bookworm) with CPython 3.11, the version CI tests. The name is fully
# qualified so buildah resolves it without short-name lookups; pin a digest
# (python:3.11-slim-bookworm@sha256:...) in a release pipeline. Only `python3` is used, never
# /usr/local/bin/python, so the same file also builds on scripts/check-image's debootstrap
# stand-in, whose interpreter is Debian's /usr/bin/python3.

# ---- build: the project and its pinned dependencies in a venv, copied whole to the runtime ----
FROM docker.io/library/python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY follower ./follower
# constraints.txt pins every dependency to the versions CI tests; the wheels of all of them
# exist for CPython 3.11 on x86_64 and arm64, so no compiler is needed.
# pip and setuptools leave the venv afterwards: the runtime installs nothing.
RUN python3 -m venv /opt/follower \
 && /opt/follower/bin/pip install --no-cache-dir --constraint constraints.txt . \
 && /opt/follower/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/follower/bin/follower --version

# ---- runtime ----
FROM docker.io/library/python:3.11-slim-bookworm
# tini runs as PID 1: it forwards SIGTERM/SIGINT to the follower (which then flushes, writes its
# checkpoint and exits 0) and reaps zombies, neither of which a Python PID 1 does by itself.
# The version is bookworm's; override with --build-arg when a point release rebuilds it.
# /var/log/follower is readable by all so that a log shipper running as another user can tail it.
ARG TINI_VERSION=0.19.0-1+b3
RUN apt-get update \
 && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 follower \
 && useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/follower --shell /usr/sbin/nologin follower \
 && install -d -m 0755 /etc/follower \
 && install -d -m 0750 -o 10001 -g 10001 /var/lib/follower \
 && install -d -m 0755 -o 10001 -g 10001 /var/log/follower
COPY --from=build /opt/follower /opt/follower
ENV PATH="/opt/follower/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GOLDRUSH_STATE_FILE=/var/lib/follower/state.json
# Numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/follower
# State (the checkpoint that makes restarts neither repeat nor lose lines) and the JSON Lines
# files of `--output file`; both must outlive the container.
VOLUME ["/var/lib/follower", "/var/log/follower"]
# Ops server of `--listen`: GET /metrics, /healthz, /readyz.
EXPOSE 9464
STOPSIGNAL SIGTERM
# slim images have no curl: ask with the venv's Python, bypassing any *_proxy variables.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/follower/bin/python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9464/healthz', timeout=4)"]
# Exec form throughout, tini first: `docker run IMAGE simulate ...` or `... run --pipeline ...`
# replace CMD and keep tini and the `follower` command.
ENTRYPOINT ["/usr/bin/tini", "--", "follower"]
CMD ["run", "--config", "/etc/follower/follower.toml", "--state-file", "/var/lib/follower/state.json", "--listen", "0.0.0.0:9464"]
