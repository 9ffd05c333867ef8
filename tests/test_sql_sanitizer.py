"""The SQL sanitizer: a corpus of statements with literals where no literal survives, the
dialect switches, IN-list and VALUES collapsing, the length limit and the cache; plus a
property test: random literals placed in statements never reach the output."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xray_autoinst.contrib import _sql, _sql_sanitize
from xray_autoinst.contrib._sql_sanitize import sanitize

# (statement, expected) -- literals replaced by ?, everything else kept
CORPUS = [
    ("SELECT * FROM users WHERE id = 42", "SELECT * FROM users WHERE id = ?"),
    ("SELECT * FROM users WHERE name = 'alice'", "SELECT * FROM users WHERE name = ?"),
    ("SELECT 'it''s a secret'", "SELECT ?"),
    ("SELECT '' , ''''", "SELECT ? , ?"),
    ("UPDATE t SET a = -3.25e-7, b = .5, c = 5., d = 1_000_000",
     "UPDATE t SET a = -?, b = ?, c = ?, d = ?"),
    ("SELECT 0x1F, 0XdeadBEEF, 0b1010, 0o777", "SELECT ?, ?, ?, ?"),
    ("SELECT E'it\\'s \\\\ secret', e'\\x41'", "SELECT ?, ?"),
    ("SELECT U&'d\\0061t\\+000061' UESCAPE '!'", "SELECT ? UESCAPE ?"),
    ("SELECT X'DEADBEEF', x'00', B'0101', N'national'", "SELECT ?, ?, ?, ?"),
    ("SELECT '\\xdeadbeef'::bytea", "SELECT ?::bytea"),
    ("SELECT $$ it's $1 'secret' $$", "SELECT ?"),
    ("SELECT $tag$ a $$ nested $$ b $tag$ || $x$y$x$", "SELECT ? || ?"),
    ("CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 $body$ LANGUAGE sql",
     "CREATE FUNCTION f() RETURNS int AS ? LANGUAGE sql"),
    ("SELECT * FROM t WHERE a IN (1, 2, 3)", "SELECT * FROM t WHERE a IN (?)"),
    ("SELECT * FROM t WHERE a IN ('x','y') AND b NOT IN (%s, %s, %s)",
     "SELECT * FROM t WHERE a IN (?) AND b NOT IN (?)"),
    ("SELECT * FROM t WHERE a in (?, ?, ?)", "SELECT * FROM t WHERE a in (?)"),
    ("SELECT * FROM t WHERE a IN ($1, $2) OR b IN (:a, :b)",
     "SELECT * FROM t WHERE a IN (?) OR b IN (?)"),
    ("SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)",
     "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ?)"),
    ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
     "INSERT INTO t (a, b) VALUES (?, ?), ..."),
    ("INSERT INTO t VALUES (%s, %s)", "INSERT INTO t VALUES (%s, %s)"),
    ("SELECT a -- the password is hunter2\nFROM t", "SELECT a FROM t"),
    ("SELECT /* secret 1 /* nested 'x' */ still */ a FROM t", "SELECT a FROM t"),
    ('SELECT "Weird ""col""", `tick`, t1.c2 FROM "T" AS t1',
     'SELECT "Weird ""col""", `tick`, t1.c2 FROM "T" AS t1'),
    ("SELECT * FROM t WHERE a = $1 AND b = ?1 AND c = :name AND d = %(name)s AND e = @v",
     "SELECT * FROM t WHERE a = $1 AND b = ?1 AND c = :name AND d = %(name)s AND e = @v"),
    ("SELECT TRUE, FALSE, NULL, true", "SELECT TRUE, FALSE, NULL, true"),
    ("SELECT col1, tab2.x3, foo$bar FROM tab2", "SELECT col1, tab2.x3, foo$bar FROM tab2"),
    ("SELECT interval '1 day', date '2024-01-01', ts::timestamp",
     "SELECT interval ?, date ?, ts::timestamp"),
    ("SELECT a\n\n   FROM\tt   WHERE b=1", "SELECT a FROM t WHERE b=?"),
    ("SELECT 'unterminated secret", "SELECT ?"),
    ("SELECT a /* unterminated comment 'secret'", "SELECT a"),
    ("SELECT $$ unterminated secret", "SELECT ?"),
    ("SELECT 'a' 'b' 'c'", "SELECT ? ? ?"),
    ("SELECT 'naïve café ☃', 'line\nbreak'", "SELECT ?, ?"),
    ("SELECT arr[1:2], arr[3] FROM t LIMIT 10 OFFSET 20",
     "SELECT arr[?:?], arr[?] FROM t LIMIT ? OFFSET ?"),
    ("SELECT '5'::int + 7", "SELECT ?::int + ?"),
    ("begin; insert into t values (1); commit;", "begin; insert into t values (?); commit;"),
]

SECRETS = ("alice", "secret", "hunter2", "42", "3.25", "1000000", "DEADBEEF", "nested",
           "0101", "national", "it''s", "2024", "day", "café", "break", "naïve")


@pytest.mark.parametrize("query, expected", CORPUS)
def test_corpus(query, expected):
    assert sanitize(query) == expected


def test_no_literal_survives_in_the_corpus():
    for query, _ in CORPUS:
        out = sanitize(query)
        for secret in SECRETS:
            if secret in query and secret not in ("42",):
                assert secret not in out, (query, out)


def test_backslash_escapes_dialect():
    # standard_conforming_strings=off: \' escapes the quote inside a plain string
    q = r"SELECT 'it\'s hidden', 'b'"
    assert sanitize(q, backslash_escapes=True) == "SELECT ?, ?"
    # standard strings: the backslash is an ordinary character and the string ends at \'
    assert sanitize(r"SELECT 'C:\', 'secret'") == "SELECT ?, ?"


def test_long_statements_are_cut_to_1000_characters():
    q = "SELECT " + ", ".join("col%d" % i for i in range(500)) + " FROM t WHERE a = 'x'"
    out = sanitize(q)
    assert len(out) == 1000
    assert out.endswith("...")
    huge = "INSERT INTO t VALUES " + ", ".join("(%d, 'v%d', %d)" % (i, i, i) for i in range(20000))
    out = sanitize(huge)
    assert len(out) <= 1000
    assert "v1" not in out and "19999" not in out
    assert out.startswith("INSERT INTO t VALUES (?, ?, ?)")


def test_bytes_and_composed_queries():
    assert _sql.query_text(b"SELECT 'x'") == "SELECT 'x'"
    assert _sql.query_text(object()) is None

    class Composed:
        def as_string(self, context):
            return "SELECT %s" % context

    assert _sql.query_text(Composed(), 1) == "SELECT 1"


def test_cache_is_bounded_and_used(monkeypatch):
    monkeypatch.setattr(_sql_sanitize, "CACHE_MAX", 50)
    _sql_sanitize._cache.clear()
    for i in range(200):
        sanitize("SELECT %d FROM t%d" % (i, i))
    assert len(_sql_sanitize._cache) <= 50
    assert "SELECT 199 FROM t199" in _sql_sanitize._cache  # the newest are kept
    q = "SELECT 'cached' FROM t"
    first = sanitize(q)
    assert _sql_sanitize._cache[q] == first
    assert sanitize(q) is first


# -- property: random literals never survive -------------------------------------------------
def _plain(s):
    return "'" + s.replace("'", "''") + "'"


def _escaped(s):
    return "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dollar(s):
    tag = "$q$" if "$q$" not in s else None
    return tag + s + tag if tag else _plain(s)


text = st.text(min_size=1, max_size=40)
string_literal = st.one_of(
    text.map(_plain),
    text.map(_escaped),
    text.filter(lambda s: "$" not in s).map(lambda s: "$$" + s + "$$"),
    text.map(_dollar),
    st.binary(min_size=1, max_size=16).map(lambda b: "X'" + b.hex() + "'"),
)
number_literal = st.one_of(
    st.integers(min_value=0, max_value=10**30).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, places=4).map(str),
    st.integers(min_value=0, max_value=2**64).map(hex),
)
literal = st.one_of(string_literal, number_literal)

TEMPLATES = [
    "SELECT * FROM accounts WHERE owner = {} AND balance > {}",
    "INSERT INTO t (a, b) VALUES ({}, {})",
    "UPDATE t SET a = {} WHERE id = {} -- done",
    "SELECT {}::text, {} FROM t /* c */",
    "SELECT coalesce(a, {}) FROM t WHERE b IN ({}) LIMIT 5",
]


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), a=literal, b=literal)
def test_random_literals_never_survive(template, a, b):
    query = template.format(a, b)
    out = sanitize(query)
    expected = sanitize(template.format("?", "?"))
    assert out == expected, (query, out)


@settings(max_examples=200, deadline=None)
@given(secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=20))
def test_random_secret_words_in_strings_never_survive(secret):
    for query in (
        "SELECT 'x' || '%s' || 'y'" % secret,
        "SELECT E'\\'%s\\''" % secret,
        "SELECT $a$ '%s' $a$" % secret,
        "SELECT 1 /* %s */, 2 -- %s" % (secret, secret),
    ):
        assert secret not in sanitize(query), query
