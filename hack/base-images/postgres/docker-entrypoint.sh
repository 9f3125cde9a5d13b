#!/usr/bin/env bash
# On first start (empty $PGDATA): initdb, create POSTGRES_USER with POSTGRES_PASSWORD[_FILE] and POSTGRES_DB,
# run /docker-entrypoint-initdb.d/*; then exec postgres listening on all addresses.
set -euo pipefail

if [[ ${1:-} != postgres ]]; then exec "$@"; fi
if [[ $(id -u) == 0 ]]; then # started as root: fix ownership, then drop to postgres
  mkdir -p "$PGDATA" && chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

# POSTGRES_PASSWORD_FILE: the password as a file (a mounted Secret), as the official image reads it.
if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then
  [[ -z ${POSTGRES_PASSWORD:-} ]] || { echo "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" >&2; exit 1; }
  POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
mkdir -p "$PGDATA"
chmod 700 "$PGDATA" 2>/dev/null || true

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z ${POSTGRES_PASSWORD:-} && ${POSTGRES_HOST_AUTH_METHOD:-} != trust ]]; then
    echo "error: POSTGRES_PASSWORD is empty (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  read -r -a extra <<<"${POSTGRES_INITDB_ARGS:-}"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
    --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" "${extra[@]}" >/dev/null
  rm -f "$pwfile"
  echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
    -w start >/dev/null
  if [[ $db != postgres ]]; then
    psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d postgres -q \
      -c "CREATE DATABASE \"$db\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) echo "running $f"; bash "$f" ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d "$db" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d "$db" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL initialised in $PGDATA (user $user, database $db)"
fi

exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "${@:2}"
