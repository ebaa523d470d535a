#!/bin/sh
# Runs once, on the first start of an empty data directory (docker-entrypoint-initdb.d).
# Creates the API's login role inside the read-only group role; the migrations grant that group
# SELECT on the tables (and create the group themselves when this script did not run).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v api_password="${API_DB_PASSWORD:-tickpipe_api}" <<'SQL'
CREATE ROLE tickpipe_reader NOLOGIN;
CREATE ROLE tickpipe_api LOGIN PASSWORD :'api_password' IN ROLE tickpipe_reader;
SQL
