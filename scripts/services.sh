#!/usr/bin/env bash
# Start the local services the test suite needs when they are installed but not running.
# Under CI=true a service that cannot be started is an error (the tests that need it fail too).
set -u
status=0

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

# PostgreSQL on 127.0.0.1:5432 (database "test", trust auth)
if port_open 5432; then
  echo "services: PostgreSQL is running on 127.0.0.1:5432"
elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  if wait_port 5432; then echo "services: PostgreSQL started"; else
    echo "services: PostgreSQL did not start"; status=1; fi
else
  echo "services: PostgreSQL is not installed (apt-get install postgresql); its tests will be skipped outside CI"
  [ "${CI:-}" = "true" ] && status=1
fi

if port_open 5432 && command -v psql >/dev/null 2>&1; then
  # make sure the database the tests use exists
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null 2>&1 \
      || su postgres -c "createdb test" >/dev/null 2>&1 || true
  fi
fi

# Redis on 127.0.0.1:6379
if port_open 6379; then
  echo "services: Redis is running on 127.0.0.1:6379"
elif command -v redis-server >/dev/null 2>&1; then
  echo "services: starting Redis"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" >/dev/null 2>&1 || true
  if wait_port 6379; then echo "services: Redis started"; else
    echo "services: Redis did not start"; status=1; fi
else
  echo "services: Redis is not installed (apt-get install redis-server); its tests will be skipped outside CI"
  [ "${CI:-}" = "true" ] && status=1
fi

# MariaDB on 127.0.0.1:3306 (database "test", root without a password over TCP)
if port_open 3306; then
  echo "services: MariaDB is running on 127.0.0.1:3306"
elif [ -x /etc/init.d/mariadb ] || [ -x /etc/init.d/mysql ]; then
  echo "services: starting MariaDB"
  { /etc/init.d/mariadb start || /etc/init.d/mysql start; } >/dev/null 2>&1 || true
  if wait_port 3306; then echo "services: MariaDB started"; else
    echo "services: MariaDB did not start"; status=1; fi
else
  echo "services: MariaDB is not installed (apt-get install mariadb-server); its tests will be skipped outside CI"
  [ "${CI:-}" = "true" ] && status=1
fi

if port_open 3306 && command -v mysql >/dev/null 2>&1; then
  # the tests log in as root without a password over TCP, into database "test"
  if ! mysql -h 127.0.0.1 -u root -e 'use test' >/dev/null 2>&1; then
    mysql -u root -e "CREATE DATABASE IF NOT EXISTS test;
      ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('')
      OR unix_socket;" >/dev/null 2>&1 || true
  fi
fi

# RabbitMQ on 5672 (guest/guest): a Celery broker of integration/test_celery_e2e.py
start_plain() {  # name port command...
  name=$1 port=$2; shift 2
  if port_open "$port"; then echo "services: $name is running on 127.0.0.1:$port"
  elif command -v "$1" >/dev/null 2>&1; then
    echo "services: starting $name"; ("$@" >/dev/null 2>&1 &)
    if wait_port "$port" || wait_port "$port"; then echo "services: $name started"; else
      echo "services: $name did not start"; status=1; fi
  else
    echo "services: $name is not installed; its tests will be skipped outside CI"
    [ "${CI:-}" = "true" ] && status=1
  fi
}
start_plain RabbitMQ 5672 rabbitmq-server

if [ "${CI:-}" = "true" ] && [ $status -ne 0 ]; then
  echo "services: a service the suite needs is missing (CI=true makes that a failure)"
  exit 1
fi
exit 0
