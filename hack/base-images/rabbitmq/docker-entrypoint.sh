#!/usr/bin/env bash
# Writes $RABBITMQ_CONFIG_FILE from the environment (default user and password, listeners) and
# starts rabbitmq-server in the foreground.
set -euo pipefail
if [[ ${1:-} != rabbitmq-server ]]; then exec "$@"; fi
conf=${RABBITMQ_CONFIG_FILE:-/var/lib/rabbitmq/rabbitmq.conf}
case $conf in *.conf) ;; *) conf=$conf.conf ;; esac
mkdir -p "$(dirname "$conf")"
if [[ -n ${RABBITMQ_DEFAULT_PASS_FILE:-} ]]; then RABBITMQ_DEFAULT_PASS=$(<"$RABBITMQ_DEFAULT_PASS_FILE"); fi
{
  echo "loopback_users.guest = false"
  echo "listeners.tcp.default = ${RABBITMQ_NODE_PORT:-5672}"
  echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
  echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
  echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}"
} >"$conf"
exec rabbitmq-server
