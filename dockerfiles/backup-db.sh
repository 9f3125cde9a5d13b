#!/usr/bin/env bash
# Dumps the database to $BACKUP_DIR/<db>-<UTC timestamp>.sql.gz (default /backups) and keeps the
# newest $BACKUP_KEEP dumps (default 7). Exits non-zero on any failure; the dump is written to a
# temporary name in the same directory and renamed only once complete, so a file under the final
# name is always a whole dump.
# Connection: the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
set -euo pipefail

dir=${BACKUP_DIR:-/backups}
keep=${BACKUP_KEEP:-7}
db=${PGDATABASE:-${PGUSER:-postgres}}

fail() { echo "backup-db: $*" >&2; exit 1; }

case $keep in
  '' | *[!0-9]* | 0) fail "BACKUP_KEEP must be a positive number, got '$keep'" ;;
  *) ;;
esac
[[ -d $dir && -w $dir ]] || fail "backup directory $dir does not exist or is not writable"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final=$dir/$db-$stamp.sql.gz
tmp=$(mktemp "$dir/.$db-$stamp.partial.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# pipefail makes a pg_dump failure fail the pipeline even though gzip succeeds.
if ! pg_dump --no-owner --no-privileges --format=plain "$db" | gzip -c >"$tmp"; then
  fail "pg_dump of $db on ${PGHOST:-localhost}:${PGPORT:-5432} failed; no backup written"
fi
gzip -t "$tmp" || fail "the compressed dump $tmp is corrupt"
chmod 0640 "$tmp"
mv -f "$tmp" "$final"
trap - EXIT
echo "backup-db: wrote $final ($(wc -c <"$final") bytes)"

# Retention: newest first by name (the timestamp sorts), delete beyond $keep.
mapfile -t old < <(find "$dir" -maxdepth 1 -type f -name "$db-*.sql.gz" | sort -r | tail -n +"$((keep + 1))")
for f in "${old[@]}"; do
  rm -f -- "$f"
  echo "backup-db: removed old backup $f"
done
