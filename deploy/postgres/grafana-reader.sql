-- A read-only login for Grafana (and anyone else who only reads the case-fact store).
--
--   psql -v ON_ERROR_STOP=1 -v owner=ketenmonitor -v reader=ketenmonitor_reader \
--        -v reader_password="$PASSWORD" -d ketenmonitor -f deploy/postgres/grafana-reader.sql
--
-- Run as the database owner (the login the workers and `ketenmonitor store upgrade` use) or a
-- super user, before or after the migrations: tables the owner creates later are readable too
-- (default privileges). The reader can connect and SELECT, nothing else: no writes, no DDL, and
-- every session is read-only. Idempotent (a rerun sets the password again).
SELECT format('CREATE ROLE %I LOGIN', :'reader')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION
    PASSWORD :'reader_password';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
