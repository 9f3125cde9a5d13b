#!/usr/bin/env bash
# Waits until PostgreSQL accepts connections (and the credentials work), or gives up after
# WAIT_TIMEOUT seconds (default 120) with a message saying what was tried, exiting 1.
# Connection: the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
set -euo pipefail

timeout=${WAIT_TIMEOUT:-120}
interval=${WAIT_INTERVAL:-2}
target="${PGUSER:-postgres}@${PGHOST:-localhost}:${PGPORT:-5432}/${PGDATABASE:-${PGUSER:-postgres}}"

case $timeout in
  '' | *[!0-9]*) echo "wait-for-db: WAIT_TIMEOUT must be a number of seconds, got '$timeout'" >&2; exit 2 ;;
  *) ;;
esac

deadline=$((SECONDS + timeout))
attempt=0
last=""
echo "wait-for-db: waiting up to ${timeout}s for PostgreSQL at $target"
while :; do
  attempt=$((attempt + 1))
  # pg_isready says the server accepts connections; the query proves that login and database work.
  if last=$(pg_isready -t 5 2>&1 && psql -X -q -t -A -v ON_ERROR_STOP=1 -c 'SELECT 1' 2>&1); then
    echo "wait-for-db: PostgreSQL at $target is ready (attempt $attempt, ${SECONDS}s)"
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    echo "wait-for-db: timed out after ${timeout}s: PostgreSQL at $target is not accepting connections" >&2
    [[ -z $last ]] || echo "wait-for-db: last error: $last" >&2
    exit 1
  fi
  sleep "$interval"
done
