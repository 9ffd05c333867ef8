#!/usr/bin/env bash
# System packages the test suite needs beyond Python's: Debian's chromium and chromium-driver
# for the browser console's tests (integration/test_ui_browser.py). Idempotent: does nothing
# when they are there. Installs them with apt-get when it can (root, or sudo without a
# password); otherwise says how. Under CI=true, missing means failure.
set -u
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: chromium and chromium-driver are installed"
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n); else
    as_root=(none); fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "${as_root[*]:-}" != none ]; then
  echo "system-deps: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if "${as_root[@]}" apt-get update -q && "${as_root[@]}" apt-get install -y -q "${missing[@]}"; then
    exit 0
  fi
fi
echo "system-deps: missing ${missing[*]}: apt-get install chromium chromium-driver;" \
  "the browser tests will be skipped outside CI"
[ "${CI:-}" = "true" ] && exit 1
exit 0
