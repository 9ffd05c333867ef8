#!/usr/bin/env bash
# System packages the test suite needs beyond Python's (idempotent; `make test` runs it):
# - libmariadb-dev and pkg-config: mysqlclient (MySQLdb) compiles against them when pip builds it;
# - chromium and chromium-driver: the browser console's tests (integration/test_ui_browser.py).
# Installed with apt-get when missing and allowed (root, or sudo without a password); otherwise
# it says how. Under CI=true a package that is still missing is an error.
set -u

have_mysql_headers() {
  command -v pkg-config >/dev/null 2>&1 &&
    { pkg-config --exists libmariadb || pkg-config --exists mysqlclient; } 2>/dev/null
}

missing=()
have_mysql_headers || missing+=(libmariadb-dev pkg-config)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: MariaDB client headers, chromium and chromium-driver are installed"
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
  "${as_root[@]}" apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { "${as_root[@]}" apt-get update -q >/dev/null && \
         "${as_root[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

still=()
have_mysql_headers || still+=(libmariadb-dev pkg-config)
[ -x /usr/bin/chromium ] || still+=(chromium)
[ -x /usr/bin/chromedriver ] || still+=(chromium-driver)
if [ ${#still[@]} -eq 0 ]; then
  echo "system-deps: installed ${missing[*]}"
  exit 0
fi
echo "system-deps: missing ${still[*]} (apt-get install ${still[*]}); mysqlclient cannot be" \
  "built and the browser tests are skipped outside CI"
[ "${CI:-}" = "true" ] && exit 1
exit 0
