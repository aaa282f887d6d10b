# Shuhi gateway: slim, non-root, with a health check. Data (the SQLite store and its generated secret)
# lives in /data; use SHUHI_DATABASE_URL=postgresql://… and SHUHI_SECRET_KEY for replicas.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# SHUHI_POLICY: the installed package cannot find policies/ beside itself, so name the copy below.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 XDG_CACHE_HOME=/tmp/cache \
    SHUHI_DATABASE_URL=sqlite:////data/shuhi.db SHUHI_POLICY=/app/policies/default.yaml
COPY --from=build /install /usr/local
COPY policies /app/policies
RUN useradd --system --uid 10001 --home-dir /data --create-home shuhi
USER shuhi
WORKDIR /data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["shuhi", "serve", "--host", "0.0.0.0", "--port", "8080"]
