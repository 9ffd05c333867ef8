"""The sanitizer's MySQL / MariaDB dialect (``mysql=True``): ``"..."`` is a string, ``#``
starts a comment, strings take backslash escapes unless the session says
NO_BACKSLASH_ESCAPES; plus a property test with MySQL-escaped random literals."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xray_autoinst.contrib._sql import mysql_info, sanitize

CORPUS = [
    ('SELECT "secret", \'it\\\'s secret\'', "SELECT ?, ?"),
    ('SELECT "a\\"secret" , `col` FROM `t`', "SELECT ? , `col` FROM `t`"),
    ('SELECT "a""secret"', "SELECT ?"),
    ("SELECT a FROM t # secret 'x'\nWHERE b = 1", "SELECT a FROM t WHERE b = ?"),
    ("SELECT a FROM t -- secret\nWHERE b = 'x'", "SELECT a FROM t WHERE b = ?"),
    ("SELECT /*! STRAIGHT_JOIN */ a FROM t", "SELECT a FROM t"),
    ("SELECT 0xDEADBEEF, X'00ff', b'0101', _utf8mb4'secret'", "SELECT ?, ?, ?, _utf8mb4?"),
    ("SELECT * FROM t WHERE a IN ('x', \"y\", 3)", "SELECT * FROM t WHERE a IN (?)"),
    ("INSERT INTO t VALUES ('a', \"b\"), ('c', \"d\")", "INSERT INTO t VALUES (?, ?), ..."),
    ("SELECT %s, %(name)s, ?", "SELECT %s, %(name)s, ?"),
    ("SELECT 'C:\\\\', 'secret'", "SELECT ?, ?"),
    ('SELECT "unterminated secret', "SELECT ?"),
]


@pytest.mark.parametrize("query, expected", CORPUS)
def test_corpus(query, expected):
    assert sanitize(query, backslash_escapes=True, mysql=True) == expected
    for secret in ("secret", "DEADBEEF", "0101"):
        assert secret not in sanitize(query, True, True)


def test_no_backslash_escapes_mode():
    # NO_BACKSLASH_ESCAPES: the backslash is ordinary, the string ends at \'
    assert sanitize("SELECT 'C:\\', 'secret'", backslash_escapes=False, mysql=True) == \
        "SELECT ?, ?"
    assert sanitize('SELECT "C:\\", "secret"', backslash_escapes=False, mysql=True) == \
        "SELECT ?, ?"


def test_other_dialects_unchanged():
    # PostgreSQL: "..." is an identifier, # an operator
    assert sanitize('SELECT "col" # 1 FROM t') == 'SELECT "col" # ? FROM t'


def test_connection_description():
    info = mysql_info(b"shop", b"app", "db.internal", 3306, None,
                      "5.5.5-10.11.19-MariaDB-0+deb12u1", True, "PyMySQL 1.1.1")
    assert info.name == "shop@db.internal"
    assert info.base == {
        "url": "mysql://app@db.internal:3306/shop", "database_type": "MariaDB",
        "database_version": "10.11.19-MariaDB-0+deb12u1", "driver_version": "PyMySQL 1.1.1",
        "user": "app"}
    assert info.mysql and info.backslash_escapes
    sock = mysql_info(None, "root", "localhost", 0, "/run/mysqld/mysqld.sock", "8.0.36",
                      True, "mysqlclient 2.2.4")
    assert sock.name == "mysql@localhost"
    assert sock.base["url"] == "mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock"
    assert sock.base["database_type"] == "MySQL"
    v6 = mysql_info("d", None, "::1", 3307, None, "8.0", True, "x")
    assert v6.base["url"] == "mysql://[::1]:3307/d"


def _single(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _double(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '""') + '"'


literal = st.one_of(
    st.text(min_size=1, max_size=40).map(_single),
    st.text(min_size=1, max_size=40).map(_double),
    st.integers(min_value=0, max_value=10**20).map(str),
    st.binary(min_size=1, max_size=8).map(lambda b: "X'" + b.hex() + "'"),
)
TEMPLATES = [
    "SELECT * FROM accounts WHERE owner = {} AND balance > {}",
    "INSERT INTO t (a, b) VALUES ({}, {})",
    "UPDATE t SET a = {} WHERE id = {} # done",
    "SELECT `a`, {} FROM t WHERE b IN ({}) LIMIT 5",
]


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), a=literal, b=literal)
def test_random_literals_never_survive(template, a, b):
    out = sanitize(template.format(a, b), backslash_escapes=True, mysql=True)
    assert out == sanitize(template.format("?", "?"), backslash_escapes=True, mysql=True)


def test_the_mysql_step_expression_has_its_two_tokens():
    from xray_autoinst.contrib import _sql_sanitize

    assert _sql_sanitize._STEP_MYSQL.pattern.count("\\#") == 2
