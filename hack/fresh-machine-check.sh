#!/usr/bin/env bash
# Prove that the make targets set up a fresh machine by themselves: copy this checkout (the files
# git tracks plus new, not ignored ones; no .venv, no .tools, no caches) into a container of the
# local Debian base image, which has nothing but apt and the CA certificates, and run
#   hack/ensure-packages.sh make=make && make setup && make TARGET
# there. Prints how long the cold set-up (`make setup`: Debian packages, virtualenv, every Python
# dependency downloaded) and the test run took, and the last lines of the run.
#   hack/fresh-machine-check.sh [TARGET]     (default test-unit)
# Exit 0: the set-up reached the test run and every test passed; 1: it reached the test run and
# some tests failed (shown); 2: the set-up failed or never reached the tests.
# FRESH_IMAGE (default local/debian:bookworm, built by hack/base-images/build.sh when missing),
# FRESH_PRIVILEGED=1 runs the container privileged (for `make test`, which starts dockerd inside;
# the host's Go, a precondition like Python, is mounted read-only for `make tools`),
# FRESH_PYTEST_ARGS (default -q -p no:cacheprovider) is passed to pytest as PYTEST_ARGS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${1:-test-unit}
image=${FRESH_IMAGE:-local/debian:bookworm}
pytest_args=${FRESH_PYTEST_ARGS:--q -p no:cacheprovider}
log() { echo "fresh-machine: $*" >&2; }

"$here/ensure-packages.sh" git=git tar=tar
"$here/dockerd.sh"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  log "building $image (debootstrap, once)"
  BASE_REGISTRY='' "$here/base-images/build.sh" debian
fi

# The machine's CA settings, so pip and apt work behind the same TLS proxy as this machine does.
env_args=()
for name in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_DEFAULT_TIMEOUT \
  http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n ${!name:-} ]] && env_args+=(-e "$name")
done
run_args=(--rm -i "${env_args[@]}" -e PYTEST_ARGS="$pytest_args")
[[ ${FRESH_PRIVILEGED:-0} == 1 ]] && run_args+=(--privileged)
# Go is a precondition of the README's fresh machine (Debian's is too old): the host's, read-only.
go_home=${GO_HOME:-/usr/local/go}
[[ -x $go_home/bin/go ]] && run_args+=(-v "$go_home:/usr/local/go:ro")

# The script inside: timings go to stderr as "fresh-machine: ..." lines, the run's output to a log.
inner=$(cat <<'SH'
set -euo pipefail
mkdir -p /src && tar -C /src -xf -
cd /src
git_init() { git init -q && git add -A && git -c user.name=fresh -c user.email=fresh@localhost commit -qm fresh; }
t0=$(date +%s)
hack/ensure-packages.sh make=make
make setup >/tmp/setup.log 2>&1 || { tail -n 30 /tmp/setup.log; exit 90; }
t1=$(date +%s)
git_init  # a checkout is a git repository; some tests read its commit
set +e
make "$TARGET" >/tmp/test.log 2>&1
rc=$?
set -e
t2=$(date +%s)
tail -n 15 /tmp/test.log
echo "fresh-machine: setup=$((t1 - t0))s test=$((t2 - t1))s rc=$rc" >&2
grep -Eq '(passed|failed|error)' /tmp/test.log || exit 91
exit "$rc"
SH
)

log "copying the checkout into $image and running: make setup && make $target"
start=$(date +%s)
set +e
(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 tar --ignore-failed-read -cf - --) |
  docker run "${run_args[@]}" -e TARGET="$target" "$image" bash -c "$inner"
rc=$?
set -e
log "total $(($(date +%s) - start))s, exit $rc"
case $rc in
  0) log "ok: the set-up reached the test run and every test passed" ;;
  1 | 2) log "the set-up reached the test run; some tests failed (see above)"; exit 1 ;;
  90) log "error: make setup failed on a fresh machine"; exit 2 ;;
  91) log "error: make $target never reached the test run"; exit 2 ;;
  *) log "error: exit $rc"; exit 2 ;;
esac
