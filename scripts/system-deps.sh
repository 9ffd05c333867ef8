#!/usr/bin/env bash
# System packages some test dependencies build against (idempotent; `make test` runs it).
# mysqlclient (MySQLdb) compiles against the MariaDB/MySQL client library: it needs its
# headers and pkg-config when pip builds it. Installed with apt-get when missing and allowed
# (root); under CI=true a missing package that cannot be installed is an error.
set -u

have_mysql_headers() {
  command -v pkg-config >/dev/null 2>&1 &&
    { pkg-config --exists libmariadb || pkg-config --exists mysqlclient; } 2>/dev/null
}

if have_mysql_headers; then
  echo "system-deps: MariaDB/MySQL client headers present (mysqlclient can build)"
  exit 0
fi

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "system-deps: installing libmariadb-dev and pkg-config (for mysqlclient)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q libmariadb-dev pkg-config >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libmariadb-dev pkg-config >/dev/null; }
fi

if have_mysql_headers; then
  echo "system-deps: MariaDB/MySQL client headers installed"
  exit 0
fi
echo "system-deps: no MariaDB/MySQL client headers (apt-get install libmariadb-dev pkg-config);" \
  "mysqlclient cannot be built"
[ "${CI:-}" = "true" ] && exit 1
exit 0
