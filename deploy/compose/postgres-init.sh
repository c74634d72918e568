#!/bin/sh
# Runs once, when the `postgres` service of docker-compose.yml initialises an empty volume
# (/docker-entrypoint-initdb.d): the read-only login Grafana uses (deploy/postgres/grafana-reader.sql).
set -eu
: "${KETENMONITOR_STORE_READER_PASSWORD:?the read-only login needs a password}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v reader="${KETENMONITOR_STORE_READER:-ketenmonitor_reader}" \
    -v reader_password="$KETENMONITOR_STORE_READER_PASSWORD" \
    -f /etc/ketenmonitor/grafana-reader.sql
