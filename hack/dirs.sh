# shellcheck shell=bash
# Sourced by the hack/ scripts: the toolkit's cache and run-time folders, by the rules of
# ci/paths.py. CI_CACHE and CI_RUN_DIR override them; otherwise XDG_CACHE_HOME (~/.cache) and /run
# (root) or XDG_RUNTIME_DIR, in a folder named after the toolkit. A folder made under the former
# name (schedule-ci) stays in use while the new one does not exist, so old caches are kept.
ci_app=ci-delivery-steps
ci_legacy_app=schedule-ci

ci_prefer_legacy() { # new legacy -> new, unless only legacy exists
  if [[ ! -e $1 && -d $2 ]]; then echo "$2"; else echo "$1"; fi
}

if [[ -n ${CI_CACHE:-} ]]; then
  ci_cache_home=$CI_CACHE
else
  ci_xdg_cache=${XDG_CACHE_HOME:-}
  [[ $ci_xdg_cache == /* ]] || ci_xdg_cache=$HOME/.cache
  ci_cache_home=$(ci_prefer_legacy "$ci_xdg_cache/$ci_app" "$HOME/.cache/$ci_legacy_app")
fi

if [[ -n ${CI_RUN_DIR:-} ]]; then
  ci_run_dir=$CI_RUN_DIR
elif ((EUID == 0)); then
  ci_run_dir=$(ci_prefer_legacy "/run/$ci_app" "/run/$ci_legacy_app")
elif [[ ${XDG_RUNTIME_DIR:-} == /* ]]; then
  ci_run_dir=$XDG_RUNTIME_DIR/$ci_app
else
  ci_run_dir=$HOME/.local/state/$ci_app
fi
export ci_cache_home ci_run_dir
