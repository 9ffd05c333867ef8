"""PyMySQL and mysqlclient in-process against the real MariaDB on 127.0.0.1:3306 (root, no
password, database test), and SQLAlchemy 2.x over each: one subsegment per statement, the
MySQL/MariaDB fields, no password and no literal, the driver's exceptions unchanged, nothing
outside a request, the same results with and without the agent, and unpatch restores."""

import importlib

import pytest
from sqltrace import assert_no_secret, request_segment, sql_subsegments
from xray_testing import need

from xray_autoinst.core import wrapping

HOST, PORT, USER, DB = "127.0.0.1", 3306, "root", "test"
SECRETS = ("literal-secret", "param-secret", "many-secret")


@pytest.fixture(autouse=True)
def _mariadb():
    from conftest import require_service

    require_service("MariaDB", HOST, PORT,
                    "start it with scripts/services.sh (apt-get install mariadb-server)")


class Driver:
    def __init__(self, name, module, patcher, label, cursor_mod):
        self.name = name
        self.module = module
        self.patcher = patcher
        self.label = label
        self.cursor_mod = cursor_mod

    def connect(self, **kw):
        m = importlib.import_module(self.module)
        kw.setdefault("user", USER)
        return m.connect(host=HOST, port=PORT, database=DB, **kw)

    def dict_cursor(self):
        return importlib.import_module(self.cursor_mod).DictCursor

    def error(self, name):
        return getattr(importlib.import_module(self.module), name)


DRIVERS = {
    "pymysql": Driver("pymysql", "pymysql", "db_pymysql", "PyMySQL", "pymysql.cursors"),
    "mysqlclient": Driver("mysqlclient", "MySQLdb", "db_mysqlclient", "mysqlclient",
                          "MySQLdb.cursors"),
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request):
    d = DRIVERS[request.param]
    need(d.module)
    return d


@pytest.fixture
def traced(tracer, driver):
    mod = importlib.import_module("xray_autoinst.contrib." + driver.patcher)
    mod.patch()
    yield tracer
    mod.unpatch()


def test_fields_of_each_statement(traced, driver):
    t, emitter = traced
    with request_segment(t) as seg:
        conn = driver.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TEMPORARY TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, "
                        "name VARCHAR(50))")
            cur.execute("INSERT INTO items (name) VALUES ('literal-secret'), (\"literal-secret\")")
            cur.executemany("INSERT INTO items (name) VALUES (%s)",
                            [("many-secret-1",), ("many-secret-2",)])
            cur.execute("SELECT id, name FROM items WHERE name = %s AND id > 0 # comment-secret",
                        ("param-secret",))
            assert cur.fetchall() == ()
            cur.execute("SELECT 'it\\'s literal-secret', 42")
            assert cur.fetchone() == ("it's literal-secret", 42)
            cur.execute("DROP PROCEDURE IF EXISTS xray_add1")
            cur.execute("CREATE PROCEDURE xray_add1(IN i INT) SELECT i + 1")
            cur.callproc("xray_add1", (41,))
            assert cur.fetchone()[0] == 42
            while cur.nextset():
                pass
            cur.execute("DROP PROCEDURE xray_add1")
        conn.close()
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [
        "CREATE TEMPORARY TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(?))",
        "INSERT INTO items (name) VALUES (?), ...",
        "INSERT INTO items (name) VALUES (%s)",
        "SELECT id, name FROM items WHERE name = %s AND id > ?",
        "SELECT ?, ?",
        "DROP PROCEDURE IF EXISTS xray_add1",
        "CREATE PROCEDURE xray_add1(IN i INT) SELECT i + ?",
        "xray_add1",
        "DROP PROCEDURE xray_add1",
    ]
    assert [s["sql"]["preparation"] for s in subs] == ["statement"] * 7 + ["call", "statement"]
    for s in subs:
        assert s["name"] == "test@127.0.0.1"
        assert s["namespace"] == "remote"
        assert "subsegments" not in s  # executemany and callproc: one subsegment each
        sql = s["sql"]
        assert sql["url"] == "mysql://root@127.0.0.1:3306/test"
        assert sql["user"] == "root"
        assert sql["database_type"] == "MariaDB"
        assert sql["database_version"][:2].isdigit() and "MariaDB" in sql["database_version"]
        assert not sql["database_version"].startswith("5.5.5-")
        assert sql["driver_version"].startswith(driver.label + " ")
    [doc] = emitter.documents
    assert doc["id"] == seg.id
    assert_no_secret(emitter, *SECRETS, "comment-secret")


def test_password_never_recorded(traced, driver):
    t, emitter = traced
    admin = driver.connect()
    with admin.cursor() as cur:  # outside the request: not recorded
        cur.execute("CREATE USER IF NOT EXISTS 'xray_pw'@'%' IDENTIFIED BY 'mysql-pw-secret'")
        cur.execute("CREATE USER IF NOT EXISTS 'xray_pw'@'localhost' "
                    "IDENTIFIED BY 'mysql-pw-secret'")
        cur.execute("GRANT SELECT ON test.* TO 'xray_pw'@'%'")
        cur.execute("GRANT SELECT ON test.* TO 'xray_pw'@'localhost'")
    admin.close()
    with request_segment(t):
        conn = driver.connect(user="xray_pw", password="mysql-pw-secret")
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
        conn.close()
    [s] = sql_subsegments(emitter)
    assert s["sql"]["url"] == "mysql://xray_pw@127.0.0.1:3306/test"
    assert s["sql"]["user"] == "xray_pw"
    assert_no_secret(emitter, "mysql-pw-secret")


def test_failing_statement(traced, driver):
    t, emitter = traced
    with request_segment(t):
        conn = driver.connect()
        cur = conn.cursor()
        with pytest.raises(driver.error("ProgrammingError")) as info:
            cur.execute("SELECT * FROM no_such_table_xyz WHERE a = 'literal-secret'")
        conn.close()
    assert info.value.args[0] == 1146  # the server's ER_NO_SUCH_TABLE, unchanged
    [s] = sql_subsegments(emitter)
    assert s["fault"] is True
    [ex] = s["cause"]["exceptions"]
    assert ex["type"] == "ProgrammingError" and ex["remote"] is True
    assert "no_such_table_xyz" in ex["message"]
    assert s["sql"]["sanitized_query"] == "SELECT * FROM no_such_table_xyz WHERE a = ?"


def test_dict_cursor_and_with_blocks(traced, driver):
    t, emitter = traced
    with request_segment(t):
        conn = driver.connect()
        with conn.cursor(driver.dict_cursor()) as cur:
            assert isinstance(cur, driver.dict_cursor())
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
        conn.close()
    assert len(sql_subsegments(emitter)) == 1


def test_nothing_outside_a_request(traced, driver):
    _t, emitter = traced
    conn = driver.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    conn.close()
    assert emitter.documents == []


def test_unpatch_restores(driver):
    cursors = importlib.import_module(driver.cursor_mod)
    base = cursors.Cursor if driver.name == "pymysql" else cursors.BaseCursor
    original = base.__dict__["execute"]
    mod = importlib.import_module("xray_autoinst.contrib." + driver.patcher)
    mod.patch()
    assert wrapping.is_wrapped(base.__dict__["execute"])
    mod.unpatch()
    assert base.__dict__["execute"] is original


def workload(driver):
    out = []
    conn = driver.connect()
    cur = conn.cursor()
    cur.execute("CREATE TEMPORARY TABLE w (id INT PRIMARY KEY AUTO_INCREMENT, s TEXT)")
    out.append(("insert", cur.execute("INSERT INTO w (s) VALUES (%s), (%s)", ("a", "b"))))
    out.append(("lastrowid", cur.lastrowid))
    out.append(("many", cur.executemany("INSERT INTO w (s) VALUES (%s)", [("c",), ("d",)])))
    cur.execute("SELECT id, s FROM w ORDER BY id")
    out.append(("fetch", cur.fetchmany(2), cur.fetchall(), cur.rowcount,
                [d[0] for d in cur.description]))
    with conn.cursor(driver.dict_cursor()) as dc:
        dc.execute("SELECT s FROM w WHERE id = %(id)s", {"id": 1})
        out.append(("dict", dc.fetchall()))
    conn.close()
    return out


def test_same_results_with_and_without_the_agent(tracer, driver):
    t, _emitter = tracer
    bare = workload(driver)
    mod = importlib.import_module("xray_autoinst.contrib." + driver.patcher)
    mod.patch()
    try:
        with request_segment(t):
            traced = workload(driver)
    finally:
        mod.unpatch()
    assert traced == bare


# -- SQLAlchemy 2.x over each driver: the driver's subsegment, once --------------------------
def test_sqlalchemy_one_subsegment_per_statement(traced, driver):
    sqlalchemy = need("sqlalchemy")
    from sqlalchemy import text

    t, emitter = traced
    scheme = "mysql+pymysql" if driver.name == "pymysql" else "mysql+mysqldb"
    engine = sqlalchemy.create_engine(f"{scheme}://{USER}@{HOST}:{PORT}/{DB}")
    with engine.connect() as conn:  # the dialect's start-up queries: outside any request
        conn.execute(text("SELECT 1"))
    assert emitter.documents == []
    with request_segment(t):
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE sa (id INT PRIMARY KEY, s TEXT)"))
            conn.execute(text("INSERT INTO sa VALUES (:id, :s)"),
                         [{"id": 1, "s": "many-secret"}, {"id": 2, "s": "many-secret"}])
            rows = conn.execute(text("SELECT s FROM sa WHERE s <> 'literal-secret' AND id = :i"),
                                {"i": 2}).all()
            assert rows == [("many-secret",)]
    engine.dispose()
    subs = sql_subsegments(emitter)
    queries = [s["sql"]["sanitized_query"] for s in subs]
    # each dialect's paramstyle: pyformat for PyMySQL, format for mysqlclient
    p = ("%(id)s", "%(s)s", "%(i)s") if driver.name == "pymysql" else ("%s",) * 3
    assert queries == [
        "CREATE TEMPORARY TABLE sa (id INT PRIMARY KEY, s TEXT)",
        "INSERT INTO sa VALUES (%s, %s)" % p[:2],
        "SELECT s FROM sa WHERE s <> ? AND id = %s" % p[2],
    ], queries
    assert all(s["name"] == "test@127.0.0.1" and "subsegments" not in s for s in subs)
    assert all(s["sql"]["driver_version"].startswith(driver.label) for s in subs)
    assert_no_secret(emitter, *SECRETS)


def test_mysqlclient_connect_parameters_without_password():
    from xray_autoinst.contrib import db_mysqlclient

    p = db_mysqlclient._params(("db.internal", "app", "pw-secret", "shop"), {"port": 3307})
    assert p == {"host": "db.internal", "user": "app", "database": "shop", "port": 3307,
                 "unix_socket": None}
    p = db_mysqlclient._params((), {"unix_socket": "/run/m.sock", "user": "u",
                                    "password": "pw-secret", "database": "d"})
    assert "pw-secret" not in repr(p) and p["unix_socket"] == "/run/m.sock"
