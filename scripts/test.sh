#!/usr/bin/env bash
# Runs every test: `bash scripts/test.sh` (extra arguments go to cargo test).
# The image tests check `hone package`'s output with skopeo and umoci, the
# dashboard test loads the page in headless Chromium, the metrics tests
# lint /metrics with promtool, and the custom-operator test needs libpython:
# run as root, this
# installs whichever of them is missing (Debian's packages); otherwise the
# tests that need a missing tool print one `SKIPPED: <tool> missing` line
# (HONE_REQUIRE_TOOLS=1, as CI sets, makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
# tool:Debian package (promtool lints the /metrics pages).
for pair in skopeo:skopeo umoci:umoci chromium:chromium promtool:prometheus; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# The custom-operator test loads onnxruntime-extensions' library from PyPI,
# a Python extension module: it needs the shared libpython of python3.
pylib=$(python3 -c 'import os, sysconfig as s; p = os.path.join(s.get_config_var("LIBDIR") or "", s.get_config_var("INSTSONAME") or ""); print(p if os.path.isfile(p) else "")')
[ -n "$pylib" ] || missing+=("libpython3.$(python3 -c 'import sys; print(sys.version_info[1])')")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} for the image and dashboard tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "not root: ${missing[*]} not installed; the tests that need them are skipped" >&2
  fi
fi
exec cargo test --workspace "$@"
