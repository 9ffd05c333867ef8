"""The SQL query sanitizer: every literal replaced by ``?``, so no value a statement carries
is ever recorded.

``sanitize(query, backslash_escapes=False)`` replaces every literal with ``?`` in one pass
of a tokenizer (one compiled regular expression finds the next token of interest; the
text between tokens is copied as is):

- strings ``'...'`` with ``''`` escapes; with ``backslash_escapes`` (PostgreSQL with
  ``standard_conforming_strings=off``) also ``\\'``; ``E'...'`` always takes backslash
  escapes; prefixed strings ``X'..'``, ``B'..'``, ``N'..'``, ``U&'..'``;
- dollar-quoted strings ``$$...$$`` and ``$tag$...$tag$`` (PostgreSQL);
- numbers (integers, decimals, exponents, ``0x``/``0b``/``0o``, ``_`` separators), but not
  digits inside identifiers or parameters (``t1``, ``$1``, ``?1``);
- comments (``-- ...``, nested ``/* ... */``) are removed;
- quoted identifiers (``"..."``, backticks) and keywords (``TRUE``, ``NULL``) are kept;
- an unterminated literal or comment swallows the rest of the text;
- with ``mysql`` (MySQL / MariaDB): ``"..."`` is a string too (with backslash escapes
  when ``backslash_escapes``), and ``# ...`` is a comment.

Then whitespace runs become one space, lists of placeholders after ``IN`` become ``IN (?)``,
repeated identical rows of placeholders in ``VALUES`` become one row and ``, ...``, and the
result is cut to 1000 characters. Results are cached per query text (bounded).
"""

from __future__ import annotations

import re

MAX_QUERY = 1000
_SCAN_LIMIT = 4 * MAX_QUERY  # stop tokenizing once this much output is produced
CACHE_MAX = 2048
CACHE_KEY_MAX = 8192  # longer query texts are sanitized every time (they are rarely repeated)

# One step of the tokenizer, matched where the previous step ended: text copied as is (spaces,
# operators, whole identifiers and keywords, parameters such as ?1 and $1), then the token that
# ends it. Identifiers are consumed whole inside the expression, so the digits of ``t1`` never
# look like a number and the Python loop runs once per literal or comment, not once per word.
_STEP = re.compile(
    r"""
    (?P<plain>(?:[^\W\d][\w$]*(?![\w$'&])|[^'"`\-/$\w.?]+|\?\d*|\$\d+|-(?!-)|/(?!\*)|\.(?!\d))*)
    (?:
      (?P<sq>')
    | (?P<dq>")
    | (?P<bt>`)
    | (?P<lc>--)
    | (?P<bc>/\*)
    | (?P<dl>\$(?:[^\W\d]\w*)?\$)
    | (?P<num>(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+
               |(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
    | (?P<word>[^\W\d][\w$]*)
    | (?P<other>.)
    )?
    """,
    re.X | re.S,
)
# MySQL / MariaDB: "..." is a string (unless ANSI_QUOTES), ``#`` starts a comment to the end of
# the line; the step expression is the same one with those two tokens added
_PLAIN_RUN = r"""[^'"`\-/$\w.?]+"""
_STEP_MYSQL = re.compile(
    _STEP.pattern.replace(_PLAIN_RUN, _PLAIN_RUN[:-2] + r"\#]+", 1).replace(
        "| (?P<lc>--)", r"| (?P<lc>--|\#)", 1),
    re.X | re.S,
)
_STD_BODY = re.compile(r"[^']*(?:''[^']*)*'")
_BSL_BODY = re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.S)
_DQ_BODY = re.compile(r'[^"]*(?:""[^"]*)*"')
_DQ_BSL_BODY = re.compile(r'[^"\\]*(?:(?:\\.|"")[^"\\]*)*"', re.S)
_BT_BODY = re.compile(r"[^`]*(?:``[^`]*)*`")
_COMMENT_PART = re.compile(r"/\*|\*/")

_PH = r"[+-]?\s*(?:\?\d*|%s|%\(\w+\)s|\$\d+|:\w+|@\w+|NULL|DEFAULT)"
# starts with a literal "(" (fast to search for); the lookbehind checks the IN before it
_IN_LIST = re.compile(
    r"\((?:(?<=\W[iI][nN] \()|(?<=\W[iI][nN]\())\s*%s(?:\s*,\s*%s)*\s*\)" % (_PH, _PH), re.I
)
_ROWS = re.compile(r"(\(\s*%s(?:\s*,\s*%s)*\s*\))(?:\s*,\s*\1)+" % (_PH, _PH), re.I)


def _scan(query: str, backslash_escapes: bool, mysql: bool = False) -> str:
    out = []
    append = out.append
    pos = 0
    n = len(query)
    step = (_STEP_MYSQL if mysql else _STEP).match
    string_body = _BSL_BODY if backslash_escapes else _STD_BODY
    limit = _SCAN_LIMIT  # the output is shorter than the input consumed so far
    while pos < n:
        m = step(query, pos)
        plain = m.group("plain")
        if plain:
            append(plain)
        kind = m.lastgroup
        if kind is None or kind == "plain":  # the end of the text
            break
        start = m.start(kind)
        end = m.end()
        if kind == "num":
            append("?")
        elif kind == "sq":
            b = string_body.match(query, end)
            end = b.end() if b is not None else n
            append("?")
        elif kind == "word":
            word = m.group("word")
            body = None
            if end < n and query[end] == "'":
                if word in ("E", "e"):
                    body = _BSL_BODY
                elif word in ("X", "x", "B", "b", "N", "n"):
                    body = string_body
            elif word in ("U", "u") and query.startswith("&'", end):
                end += 1
                body = string_body
            if body is None:
                append(word)
            else:
                b = body.match(query, end + 1)
                end = b.end() if b is not None else n
                append("?")
        elif kind == "dl":
            tag = m.group("dl")
            close = query.find(tag, end)
            end = n if close < 0 else close + len(tag)
            append("?")
        elif kind == "dq" and mysql:  # a string
            b = (_DQ_BSL_BODY if backslash_escapes else _DQ_BODY).match(query, end)
            end = b.end() if b is not None else n
            append("?")
        elif kind == "dq" or kind == "bt":
            b = (_DQ_BODY if kind == "dq" else _BT_BODY).match(query, end)
            if b is None:
                append("?")
                end = n
            else:
                end = b.end()
                append(query[start:end])
        elif kind == "lc":
            nl = query.find("\n", end)
            end = n if nl < 0 else nl + 1
            append(" ")
        elif kind == "bc":  # block comment, nested as in PostgreSQL (unterminated: to the end)
            depth = 1
            while depth:
                c = _COMMENT_PART.search(query, end)
                if c is None:
                    end = n
                    break
                end = c.end()
                depth += 1 if c.group() == "/*" else -1
            append(" ")
        else:  # other: a character that starts nothing
            append(m.group("other"))
        pos = end
        if end > limit:
            size = sum(map(len, out))
            if size > _SCAN_LIMIT:
                append(" ...")
                break
            limit = end + _SCAN_LIMIT - size
    return "".join(out)


def _sanitize(query: str, backslash_escapes: bool = False, mysql: bool = False) -> str:
    text = " ".join(_scan(query, backslash_escapes, mysql).split())
    if "(" in text:
        text = _IN_LIST.sub("(?)", text)
        text = _ROWS.sub(r"\1, ...", text)
    if len(text) > MAX_QUERY:
        text = text[: MAX_QUERY - 3] + "..."
    return text


_cache: dict = {}
_cache_bsl: dict = {}
_cache_mysql: dict = {}  # (query, backslash_escapes) -> text


def sanitize(query: str, backslash_escapes: bool = False, mysql: bool = False) -> str:
    """``query`` with every literal replaced by ``?`` (see the module's docstring). ``mysql``:
    the MySQL/MariaDB dialect, where ``"..."`` is a string and ``#`` starts a comment."""
    if mysql:
        cache = _cache_mysql
        key = (query, backslash_escapes)
    else:
        cache = _cache_bsl if backslash_escapes else _cache
        key = query
    text = cache.get(key)
    if text is not None:
        return text
    text = _sanitize(query, backslash_escapes, mysql)
    if len(query) <= CACHE_KEY_MAX:
        if len(cache) >= CACHE_MAX:
            try:  # drop the oldest entry (dicts keep insertion order)
                del cache[next(iter(cache))]
            except (StopIteration, KeyError, RuntimeError):
                cache.clear()
        cache[key] = text
    return text
