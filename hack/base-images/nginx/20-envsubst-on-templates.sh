#!/bin/sh
# Renders $NGINX_ENVSUBST_TEMPLATE_DIR/**/*$NGINX_ENVSUBST_TEMPLATE_SUFFIX into $NGINX_ENVSUBST_OUTPUT_DIR,
# substituting only variables that are set in the environment (so nginx's own $vars survive) and,
# when NGINX_ENVSUBST_FILTER is set, whose names match that regular expression.
set -eu
template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
  echo "$0: ERROR: $template_dir exists, but $output_dir is not writable" >&2
  exit 1
fi
filter=${NGINX_ENVSUBST_FILTER:-}
vars=$(env | cut -d= -f1 | grep -E -- "${filter:-.}" | sed 's/^/${/; s/$/}/' | tr '\n' ' ' || true)
find "$template_dir" -follow -type f -name "*$suffix" | while read -r template; do
  relative=${template#"$template_dir/"}
  output=$output_dir/${relative%"$suffix"}
  mkdir -p "$(dirname "$output")"
  echo "$0: rendering $template to $output"
  envsubst "$vars" <"$template" >"$output"
done
