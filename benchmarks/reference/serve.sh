#!/usr/bin/env bash
# Serve the bare DRF reference on 127.0.0.1:PORT against a Postgres database (created if missing).
#   PYTHON=.venv/bin/python benchmarks/reference/serve.sh PORT postgres://USER@127.0.0.1:5432/DBNAME
# The interpreter needs django, djangorestframework, dj-database-url, psycopg and gunicorn.
# Endpoints: POST /jobs {"prompt": "..."} -> 201 (validate, one INSERT); GET /jobs/<id> -> 200 (one SELECT).
# It runs in the foreground (exec gunicorn, 4 sync workers, persistent connections): stop it with SIGTERM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:?PORT}; url=${2:?DATABASE_URL}
py=${PYTHON:-python3}
db=${url##*/}; server=${url%/*}
psql "$server/postgres" -qtc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql "$server/postgres" -qc "CREATE DATABASE \"$db\""
export REF_DATABASE_URL=$url PYTHONPATH=$here
"$py" "$here/migrate.py" 2>/dev/null || true   # the table may exist already
exec "$py" -m gunicorn -w 4 -b "127.0.0.1:$port" --log-level warning refdrf:application
