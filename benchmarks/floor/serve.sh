#!/usr/bin/env bash
# Serve the invariants' floor (floor.py) on 127.0.0.1:PORT against a fresh Postgres database, as
# benchmarks/reference/serve.sh serves the reference: gunicorn, 4 sync workers, persistent connections.
#   PYTHON=.venv/bin/python benchmarks/floor/serve.sh PORT postgres://USER@127.0.0.1:5432/DBNAME
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:?PORT}; url=${2:?DATABASE_URL}
py=${PYTHON:-python3}
db=${url##*/}; server=${url%/*}
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
psql "$server/postgres" -qc "CREATE DATABASE \"$db\""
export FLOOR_DATABASE_URL=$url PYTHONPATH=$here
"$py" "$here/migrate.py"
exec "$py" -m gunicorn -w 4 -b "127.0.0.1:$port" --log-level warning floor:application
