# Ketenmonitor: one image for the stream worker, the simulator and every other subcommand.
#   docker build -t ketenmonitor .
#   docker run --rm ketenmonitor ketenmonitor --help
# Pinned to an exact Python release (the one the project is tested with is 3.11).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ketenmonitor ketenmonitor
COPY streams streams
COPY schemas schemas
COPY dashboards dashboards
RUN pip install .

# Workers keep their state in memory and in Kafka changelog topics; nothing on local disk.
# A fixed uid, so that Kubernetes can check runAsNonRoot (deploy/helm: runAsUser 10001).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ketenmonitor --create-home ketenmonitor
USER 10001
ENV KETENMONITOR_METRICS_HOST=0.0.0.0

EXPOSE 9464
CMD ["ketenmonitor", "worker", "--loglevel", "info"]
