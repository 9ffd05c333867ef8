"""Transparency: with the agent the application sees the same arguments, return types, errors
and tracebacks as without it (issue 12). Each check runs in a fresh interpreter where it
patches, so the rest of the suite is unaffected."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from xray_testing import skip_or_fail

from xray_autoinst.registry import INTEGRATIONS

CI = os.environ.get("CI", "").lower() == "true"


def _installed(module):
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _need(module):
    if not _installed(module):
        skip_or_fail(f"{module} is not installed in the test environment")


def _run(script, *argv, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY"))}
    env["XRAY_AUTOINST_RAISE"] = "1"
    env["XRAY_SAMPLING"] = "local"
    env["XRAY_SAMPLING_RULES"] = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'
    env["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:9"  # nothing listens: documents are dropped
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- 1. every replacement accepts exactly what the original accepts --------------------------
SIGNATURES = r"""
import importlib, inspect, json, sys
from xray_autoinst.core.wrapping import MARK
from xray_autoinst.registry import INTEGRATIONS

name = sys.argv[1]
targets, patcher = INTEGRATIONS[name].targets, INTEGRATIONS[name].patcher
mods = [importlib.import_module(t) for t in targets]
mod = importlib.import_module(patcher)
mod.patch()

pairs = []  # (label, replacement function, original)
for m in mods:
    for attr, obj in list(vars(m).items()):
        cands = [(attr, obj)]
        try:  # lazy objects (django.conf.settings) raise on any look
            own_class = isinstance(obj, type) and obj.__module__ == m.__name__
        except Exception:
            continue
        if own_class:
            cands += [(attr + "." + k, v) for k, v in vars(obj).items()]
        for label, cand in cands:
            try:
                func = getattr(cand, "__func__", cand)
                inner = getattr(func, MARK, None)
            except Exception:
                continue
            if inner is not None:
                pairs.append((label, func, getattr(inner, "__func__", inner)))
# the traced subclasses' methods (sqlite3 and psycopg2 objects are C types: subclassed)
for cls_name in ("TracedCursorMixin", "TracedConnectionMixin"):
    mixin = getattr(mod, cls_name, None)
    if mixin is None:
        continue
    base = mod._base_cursor() if "Cursor" in cls_name else None
    if base is None:
        base = {"sqlite3": "sqlite3.Connection", "psycopg2": "psycopg2.extensions.connection"}[name]
        modname, _, clsname = base.rpartition(".")
        base = getattr(importlib.import_module(modname), clsname)
    for k, v in vars(mixin).items():
        if callable(v) and not k.startswith("__"):
            pairs.append((cls_name + "." + k, v, getattr(base, k)))

problems = []
for label, func, original in pairs:
    own = inspect.signature(func, follow_wrapped=False).parameters
    try:
        orig = inspect.signature(original).parameters
    except (TypeError, ValueError):  # a C function without a signature
        orig = {}
    for p in own.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        o = orig.get(p.name)
        if o is None or o.kind != p.kind:
            problems.append("%s: parameter %r (%s) not so in the original" % (
                label, p.name, p.kind.name))
    if not label.startswith("Traced") and getattr(func, "__wrapped__", None) is None:
        problems.append("%s: no __wrapped__ (functools.wraps)" % label)
print(json.dumps({"checked": [p[0] for p in pairs], "problems": problems}))
"""

SIGNATURE_CASES = sorted(n for n in INTEGRATIONS if n != "uwsgi")


@pytest.mark.parametrize("name", SIGNATURE_CASES)
def test_replacements_accept_what_the_original_accepts(name):
    """No replacement names a parameter the original does not have: its receiver is
    positional-only, the rest goes through ``*args, **kwargs`` (or the original's own
    signature, for the hand-written hot-path replacements)."""
    _need(INTEGRATIONS[name].targets[0])
    out = _run(SIGNATURES, name)
    assert out["checked"] or name == "flask", "nothing wrapped?"  # flask: a signal receiver
    assert out["problems"] == [], out["problems"]


KEYWORD_CALLS = r"""
import importlib, json, re, sys
from xray_autoinst.core.wrapping import MARK
from xray_autoinst.registry import INTEGRATIONS

name = sys.argv[1]
targets, patcher = INTEGRATIONS[name].targets, INTEGRATIONS[name].patcher
mods = [importlib.import_module(t) for t in targets]
importlib.import_module(patcher).patch()
NAMES = ("self", "fn", "wrapped", "instance", "args", "kwargs")


def outcome(call):
    try:
        result = call()
        if type(result).__name__ == "coroutine":  # async: the error comes when it runs
            try:
                result.send(None)
            finally:
                result.close()
    except BaseException as exc:  # noqa: BLE001
        return [type(exc).__name__, re.sub(r"0x[0-9a-f]+", "0x", str(exc))]
    return ["ok", type(result).__name__]


results = {}
for m in mods:
    for attr, obj in list(vars(m).items()):
        owners = [(None, attr, obj)]
        try:  # lazy objects (django.conf.settings) raise on any look
            own_class = isinstance(obj, type) and obj.__module__ == m.__name__
        except Exception:
            continue
        if own_class:
            owners += [(obj, k, v) for k, v in vars(obj).items()]
        for owner, key, cand in owners:
            try:
                inner = getattr(getattr(cand, "__func__", cand), MARK, None)
            except Exception:
                continue
            if inner is None:
                continue
            label = (owner.__name__ + "." if owner else "") + key
            if owner is None:
                replacement, original = cand, inner
            else:
                try:
                    receiver = owner.__new__(owner)
                except Exception:
                    continue
                replacement = getattr(receiver, key)
                original = inner.__get__(receiver, owner)
            for kw in NAMES:
                results["%s(%s=)" % (label, kw)] = [
                    outcome(lambda: original(**{kw: 1})),
                    outcome(lambda: replacement(**{kw: 1}))]
print(json.dumps(results))
"""


@pytest.mark.parametrize("name", SIGNATURE_CASES)
def test_wrapped_methods_called_with_keyword_names_as_bare(name):
    """Each wrapped method of the integration, called with a keyword argument named ``self``,
    ``fn``, ``wrapped``, ``instance``, ``args`` or ``kwargs`` (on an instance made without
    ``__init__``), ends as the original does: the same exception type and message (a
    coroutine function's when the coroutine runs: an async replacement binds the original's
    arguments then, not at the call)."""
    _need(INTEGRATIONS[name].targets[0])
    out = _run(KEYWORD_CALLS, name, env_extra={"XRAY_AUTOINST_RAISE": "0"})
    assert out or name == "flask"
    for call, (bare, traced) in out.items():
        if name == "aws_xray_sdk":  # the bridged recorder methods are reimplementations:
            assert traced[0] == bare[0], call  # same exception type, own wording
        else:
            assert traced == bare, call


KEYWORDS = r"""
import json, sys
from xray_autoinst.core import tracer as tracer_mod, wrapping
from xray_autoinst.contrib import ctx_futures
traced = sys.argv[1] == "1"
if traced:
    ctx_futures.patch()
    tracer_mod.get_tracer()
from concurrent.futures import ThreadPoolExecutor

def task(*args, **kwargs):
    return [list(args), sorted(kwargs.items())]

out = {}
names = dict(self=2, fn=3, wrapped=4, instance=5, args=6, kwargs=7)
with ThreadPoolExecutor(1) as ex:
    if traced:  # inside a segment too: the context-copying branch
        seg, token = tracer_mod.tracer.begin_segment("t")
    for key, value in names.items():
        out[key] = ex.submit(task, 1, **{key: value}).result()
    out["all"] = ex.submit(task, 1, **names).result()
    try:
        ex.submit(fn=task)
    except TypeError as exc:
        out["fn_keyword"] = type(exc).__name__
    if traced:
        tracer_mod.tracer.end_segment(seg, token)

# wrapping.wrap itself: a method, a function, a static and a class method
class K:
    def m(self, /, *args, **kwargs):
        return [type(self).__name__, list(args), sorted(kwargs.items())]
    @staticmethod
    def s(*args, **kwargs):
        return [list(args), sorted(kwargs.items())]
    @classmethod
    def c(cls, /, *args, **kwargs):
        return [cls.__name__, list(args), sorted(kwargs.items())]

mod = type(sys)("m")
mod.f = K.s
through = lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs)
if traced:
    for n in ("m", "s", "c"):
        wrapping.wrap(K, n, through)
    wrapping.wrap(mod, "f", through)
out["wrap"] = [K().m(1, **names), K.s(1, **names), K.c(1, **names), mod.f(1, **names),
               K.m(K(), **names)]
print(json.dumps(out))
"""


def test_submit_with_keyword_names_as_bare():
    """``ThreadPoolExecutor().submit(fn, 1, self=2)`` (issue 12, 1): TypeError under the agent
    before, the same result as bare now; also for each kind of wrapped callable."""
    bare = _run(KEYWORDS, "0")
    traced = _run(KEYWORDS, "1")
    assert traced == bare
    assert bare["self"] == [[1], [["self", 2]]]


# -- 3. sqlite3 and psycopg2: arguments, types and errors as bare -----------------------------
PRELUDE = r"""
import json, re, sys, traceback
traced = sys.argv[1] in ("1", "2")
if traced:
    from xray_autoinst.core import tracer as tracer_mod
    tracer_mod.get_tracer()
    seg, token = tracer_mod.tracer.begin_segment("t")
out = {}

def describe(value):
    t = type(value)
    return {"type": t.__module__ + "." + t.__qualname__,
            "repr": re.sub(r"0x[0-9a-f]+", "0x", repr(value))[:200]}

def check(label, call):
    try:
        out[label] = ["ok", describe(call())]
    except BaseException as exc:
        # the application's view of the error: type, message, the traceback's frames
        frames = [(f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]
        if sys.version_info < (3, 11):  # a bare raise there re-raises the saved traceback
            frames = None
        out[label] = ["raised", type(exc).__module__ + "." + type(exc).__qualname__,
                      str(exc), frames]
"""

SQLITE = PRELUDE + r"""
import sqlite3
if traced:
    from xray_autoinst.contrib import db_sqlite3
    db_sqlite3.patch()

con = sqlite3.connect(":memory:")
con.execute("create table t (a, b)")

class MyCursor(sqlite3.Cursor):
    pass

class MyConnection(sqlite3.Connection):
    pass

check("connect factory=None", lambda: sqlite3.connect(":memory:", factory=None))
check("connect factory=5", lambda: sqlite3.connect(":memory:", factory=5))
check("connect factory=MyConnection", lambda: sqlite3.connect(":memory:", factory=MyConnection))
check("connect positional factory",
      lambda: sqlite3.connect(":memory:", 5.0, 0, "", True, MyConnection))
check("connect no database", lambda: sqlite3.connect())
check("connect bad keyword", lambda: sqlite3.connect(":memory:", bogus=1))
check("connect bad path", lambda: sqlite3.connect("/nonexistent/dir/x.db"))
check("cursor()", lambda: con.cursor())
check("cursor(None)", lambda: con.cursor(None))
check("cursor(factory=None)", lambda: con.cursor(factory=None))
check("cursor(5)", lambda: con.cursor(5))
check("cursor(MyCursor)", lambda: con.cursor(MyCursor))
check("cursor(factory=MyCursor)", lambda: con.cursor(factory=MyCursor))
check("cursor(callable)", lambda: con.cursor(lambda c: MyCursor(c)))
check("cursor(MyCursor, factory=MyCursor)", lambda: con.cursor(MyCursor, factory=MyCursor))
check("cursor bad keyword", lambda: con.cursor(bogus=1))
check("execute", lambda: con.execute("insert into t values (?, ?)", (1, 2)))
check("execute sql=", lambda: con.execute(sql="select 1"))
check("execute no args", lambda: con.execute())
check("execute bad sql", lambda: con.execute("selec 1"))
check("execute missing table", lambda: con.cursor().execute("select * from missing"))
check("execute wrong binding count", lambda: con.execute("select ?", (1, 2)))
check("execute two statements", lambda: con.execute("select 1; select 2"))
check("executemany", lambda: con.executemany("insert into t values (?, ?)", [(1, 2), (3, 4)]))
check("executemany bad", lambda: con.executemany("insert into t values (?, ?)", 5))
check("executescript", lambda: con.executescript("select 1; select 2;"))
check("executescript bytes", lambda: con.executescript(b"select 1"))
check("fetchall", lambda: con.execute("select a, b from t order by a").fetchall())
check("cursor isinstance", lambda: isinstance(con.cursor(), sqlite3.Cursor))
check("connection isinstance", lambda: isinstance(con, sqlite3.Connection))
def with_block():
    with sqlite3.connect(":memory:") as c:
        return c.execute("select 1").fetchone()
check("with", with_block)
def backup():
    target = sqlite3.connect(":memory:")
    con.backup(target)
    return target.execute("select count(*) from t").fetchone()
check("backup", backup)
check("iterdump", lambda: list(con.iterdump())[:3])
def row_factory():
    c = sqlite3.connect(":memory:")
    c.row_factory = sqlite3.Row
    return tuple(c.execute("select 1 as x").fetchone())
check("row_factory", row_factory)
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out))
"""

# what cannot be kept (documented in docs/sql.md): the exact type of connections and cursors
SQLITE_TYPES = r"""
import json, sqlite3, sys
if sys.argv[1] == "1":
    from xray_autoinst.contrib import db_sqlite3
    db_sqlite3.patch()
con = sqlite3.connect(":memory:")
print(json.dumps({"connection": type(con) is sqlite3.Connection,
                  "cursor": type(con.cursor()) is sqlite3.Cursor}))
"""


def _compare(script):
    """The script's results bare, and traced twice: with the test switch that re-raises
    instrumentation errors (everything but the traceback compared: an instrumentation error
    keeps its frames there) and as a user runs it (the traceback compared too)."""
    bare = _run(script, "0")
    strict = _run(script, "1")
    user = _run(script, "1", env_extra={"XRAY_AUTOINST_RAISE": "0"})
    for label in bare:
        if isinstance(bare[label], dict):  # full results, beside the check() summaries
            assert strict[label] == bare[label], label
        else:
            assert strict[label][:3] == bare[label][:3], label
        assert user[label] == bare[label], label
    assert sorted(strict) == sorted(user) == sorted(bare)
    return bare


def test_sqlite3_arguments_types_errors_as_bare():
    """``con.cursor(None)`` raises the driver's TypeError as bare (issue 12, 3); every other
    call the sqlite3 integration touches gives the same result type, repr, error type, error
    message and traceback frames as without the agent."""
    bare = _compare(SQLITE)
    assert bare["cursor(None)"][0] == "raised"


def test_sqlite3_exact_types_documented_difference():
    assert _run(SQLITE_TYPES, "0") == {"connection": True, "cursor": True}
    assert _run(SQLITE_TYPES, "1") == {"connection": False, "cursor": False}  # subclasses


PSYCOPG2 = PRELUDE + r"""
import psycopg2, psycopg2.extensions as ext, psycopg2.extras as extras
if traced:
    from xray_autoinst.contrib import db_psycopg2
    db_psycopg2.patch()
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"

class MyConnection(ext.connection):
    pass

class MyCursor(ext.cursor):
    pass

def conn_kind(**kw):
    c = psycopg2.connect(DSN, **kw)
    try:
        cur = c.cursor()
        return [isinstance(c, kw.get("connection_factory") or ext.connection),
                type(cur).__name__, c.cursor_factory and c.cursor_factory.__name__]
    finally:
        c.close()

con = psycopg2.connect(DSN)
check("connect", lambda: [describe(con)["type"], con.closed])
check("connection_factory=None", lambda: conn_kind(connection_factory=None))
check("cursor_factory=None", lambda: conn_kind(cursor_factory=None))
check("connection_factory=MyConnection", lambda: conn_kind(connection_factory=MyConnection))
check("cursor_factory=RealDictCursor", lambda: conn_kind(cursor_factory=extras.RealDictCursor))
check("connection_factory=5", lambda: psycopg2.connect(DSN, connection_factory=5))
check("connection_factory=int", lambda: psycopg2.connect(DSN, connection_factory=int))
check("connect positional factory", lambda: psycopg2.connect(DSN, MyConnection).close())
check("connect bad dsn", lambda: psycopg2.connect("nonsense=1"))
check("connect bad keyword", lambda: psycopg2.connect(DSN, bogus=1))
check("cursor()", lambda: con.cursor())
check("cursor(None, None)", lambda: con.cursor(None, None))
check("cursor(cursor_factory=None)", lambda: con.cursor(cursor_factory=None))
check("cursor(cursor_factory=int)", lambda: con.cursor(cursor_factory=int))
check("cursor(cursor_factory=5)", lambda: con.cursor(cursor_factory=5))
check("cursor(cursor_factory=MyCursor)",
      lambda: isinstance(con.cursor(cursor_factory=MyCursor), MyCursor))
check("cursor bad keyword", lambda: con.cursor(bogus=1))
check("cursor withhold unnamed", lambda: con.cursor(withhold=True))
check("cursor twice factory", lambda: con.cursor(None, MyCursor, cursor_factory=MyCursor))
cur = con.cursor()
check("execute", lambda: [cur.execute("select %s", (1,)), cur.fetchall()])
check("execute query=", lambda: [cur.execute(query="select 2"), cur.fetchall()])
check("execute no args", lambda: cur.execute())
check("execute vars bad", lambda: cur.execute("select %s", 5))
con.rollback()
check("execute syntax", lambda: cur.execute("selec 1"))
con.rollback()
check("executemany", lambda: cur.executemany("select %s", [(1,), (2,)]))
check("callproc", lambda: [cur.callproc("abs", (-3,)), cur.fetchall()])
check("callproc missing", lambda: cur.callproc("no_such_proc_xyz"))
con.rollback()
check("quote_ident", lambda: ext.quote_ident("a b", cur))
check("execute_values", lambda: extras.execute_values(
    cur, "select * from (values %s) v", [(1,), (2,)], fetch=True))
check("isinstance cursor", lambda: isinstance(con.cursor(), ext.cursor))
con.close()
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out))
"""


def test_psycopg2_arguments_errors_as_bare():
    """psycopg2's ``connection_factory=None`` / ``cursor_factory=None`` keep their meaning,
    wrong factories and arguments get the driver's own errors, results look the same."""
    _need("psycopg2")
    from conftest import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432, "start PostgreSQL (scripts/services)")
    bare = _compare(PSYCOPG2)
    assert bare["connection_factory=5"][0] == "raised"


# -- 2. the server's wsgi.file_wrapper is returned untouched (in process) ---------------------
def _serve(app, environ):
    started = []
    result = app(environ, lambda status, headers, exc_info=None: started.append(headers))
    return result, started


def test_file_wrapper_class_without_duck_attributes_passes_through(tracer):
    """waitress's wrapper has neither ``filelike`` nor ``blksize``: recognised by its class."""
    import io

    from xray_autoinst.contrib.web_wsgi import XRayMiddleware

    class ReadOnlyFileWrapper:  # the shape of waitress's
        def __init__(self, file, block_size=32768):
            self.file, self.block_size = file, block_size

        def __iter__(self):
            return iter(lambda: self.file.read(self.block_size), b"")

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"data"))

    t, emitter = tracer
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/f", "wsgi.file_wrapper": ReadOnlyFileWrapper}
    result, _ = _serve(XRayMiddleware(app), env)
    assert type(result) is ReadOnlyFileWrapper
    assert env["wsgi.file_wrapper"] is ReadOnlyFileWrapper
    assert len(emitter.documents) == 1  # the segment ended when the wrapper was returned


def test_file_wrapper_function_result_passes_through_by_identity(tracer):
    """uWSGI's ``wsgi.file_wrapper`` is a built-in function returning the file itself: its
    result is recognised by identity; environ holds the server's function again afterwards;
    a look-alike object the application made itself is an ordinary iterable."""
    import io

    from xray_autoinst.contrib.web_wsgi import XRayMiddleware

    def server_file_wrapper(filelike, blksize=8192):
        return filelike

    class LookAlike:
        filelike = blksize = None

        def __iter__(self):
            return iter([b"x"])

    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/own":
            return LookAlike()
        return environ["wsgi.file_wrapper"](io.BytesIO(b"data"), 4096)

    t, emitter = tracer
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/f", "wsgi.file_wrapper": server_file_wrapper}
    result, _ = _serve(XRayMiddleware(app), env)
    assert type(result) is io.BytesIO
    assert env["wsgi.file_wrapper"] is server_file_wrapper
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/own", "wsgi.file_wrapper": server_file_wrapper}
    result, _ = _serve(XRayMiddleware(app), env)
    assert type(result) is not LookAlike  # timed to its close(), like any iterable
    assert list(result) == [b"x"]
    result.close()
    assert len(emitter.documents) == 2


# -- 6. finished entities hold no driver objects ----------------------------------------------
LIFETIME = r"""
import gc, http.server, json, sys, threading, types, weakref
sys.path.insert(0, sys.argv[2])
from xray_testing import install_tracer
from xray_autoinst.core.entities import Entity
from xray_autoinst.contrib import db_sqlite3, http_client
db_sqlite3.patch(); http_client.patch()
pg = sys.argv[1] == "1"
if pg:
    from xray_autoinst.contrib import db_psycopg, db_psycopg2
    db_psycopg.patch(); db_psycopg2.patch()


class Holding:  # a sender thread that has not run yet: every finished entity is held
    def __init__(self):
        self.held = []

    def submit(self, entity):
        self.held.append(entity)

    def flush(self, timeout=0):
        pass


t, _ = install_tracer({"XRAY_CONTEXT_MISSING": sys.argv[3]})
t.emitter = Holding()
import sqlite3, http.client
refs = {}
request = sys.argv[3] != "call"
if request:
    seg, token = t.begin_segment("lifetime")


def run(label, conn, cur, bad):
    cur.execute("select 1")
    try:
        cur.execute(bad)
    except Exception as exc:  # the driver's error (psycopg2's has .cursor)
        refs[label + " error"] = weakref.ref(exc)
    refs[label + " cursor"] = weakref.ref(cur)
    if label != "sqlite3":  # sqlite3.Connection has no weak references, even bare
        refs[label + " connection"] = weakref.ref(conn)


con = sqlite3.connect(":memory:")
run("sqlite3", con, con.cursor(), "selec")
con.close()
del con
if pg:
    import psycopg, psycopg2
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    for label, mod in (("psycopg2", psycopg2), ("psycopg", psycopg)):
        c = mod.connect(dsn)
        run(label, c, c.cursor(), "selec")
        c.close()
        del c
srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
threading.Thread(target=srv.handle_request, daemon=True).start()
h = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
h.request("GET", "/")
r = h.getresponse()
r.read()
refs["http connection"] = weakref.ref(h)
refs["http response"] = weakref.ref(r)
h.close()
del h, r
if request:
    t.end_segment(seg, token)
gc.collect()
alive = sorted(k for k, v in refs.items() if v() is not None)
# what the held entities reach: data only (no driver, socket or exception object)
seen, odd, stack = set(), set(), list(t.emitter.held)
data = (dict, list, tuple, str, int, float, bool, type(None), bytes, Entity)
while stack:
    o = stack.pop()
    if id(o) in seen or isinstance(o, (type, types.ModuleType)):
        continue
    seen.add(id(o))
    if isinstance(o, data):
        stack.extend(gc.get_referents(o))
    elif type(o).__name__ != "lock":
        odd.add(type(o).__module__ + "." + type(o).__qualname__)
print(json.dumps({"held": len(t.emitter.held), "alive": alive, "reached": sorted(odd),
                  "checked": sorted(refs)}))
"""


@pytest.mark.parametrize("mode", ["request", "call"])
def test_finished_entities_keep_no_driver_objects(mode):
    """After a traced request, the application's cursors, connections, responses and driver
    errors are collectable while the finished documents still wait for the sender thread
    (issue 12, 6), in a request and with every call its own segment."""
    from conftest import require_service

    pg = _installed("psycopg") and _installed("psycopg2")
    if pg:
        require_service("PostgreSQL", "127.0.0.1", 5432, "start PostgreSQL (scripts/services)")
    here = os.path.dirname(os.path.abspath(__file__))
    out = _run(LIFETIME, "1" if pg else "0", here, mode)
    assert out["held"] >= 1
    assert out["alive"] == [], out
    assert out["reached"] == [], out
    assert len(out["checked"]) == (10 if pg else 4)


# -- 5. the agent's frames stay out of the application's tracebacks --------------------------
TIMEOUT = PRELUDE + r"""
import http.client, socket, urllib.request
if traced:
    from xray_autoinst.contrib import http_client
    http_client.patch()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)  # accepts (in the kernel) and never answers
port = listener.getsockname()[1]

def getresponse():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)
    conn.request("GET", "/")
    return conn.getresponse()

def urlopen():
    return urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=0.2)

def refused():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); free = s.getsockname()[1]; s.close()
    conn = http.client.HTTPConnection("127.0.0.1", free, timeout=2)
    conn.request("GET", "/")

check("getresponse timeout", getresponse)
check("urlopen timeout", urlopen)
check("connection refused", refused)
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out))
"""


def test_timeout_traceback_has_no_agent_frame():
    """A timed-out ``getresponse`` (and urllib's, and a refused connect) raises with the same
    traceback as bare: no ``xray_autoinst`` frame in it (issue 12, 5)."""
    bare = _compare(TIMEOUT)
    assert bare["getresponse timeout"][1] in ("builtins.TimeoutError", "socket.timeout")
    assert bare["connection refused"][1] == "builtins.ConnectionRefusedError"


def test_response_length_stays_readable(tracer):
    """A response iterable with ``__len__`` keeps it through the middleware (wsgiref and
    waitress set Content-Length for a one-block response); one without has none either."""
    from xray_autoinst.contrib.web_wsgi import XRayMiddleware

    class OneBlock:
        def __len__(self):
            return 1

        def __iter__(self):
            return iter([b"x"])

    def app(environ, start_response):
        start_response("200 OK", [])
        return OneBlock() if environ["PATH_INFO"] == "/sized" else (b for b in [b"x"])

    result, _ = _serve(XRayMiddleware(app), {"REQUEST_METHOD": "GET", "PATH_INFO": "/sized"})
    assert len(result) == 1
    result.close()
    result, _ = _serve(XRayMiddleware(app), {"REQUEST_METHOD": "GET", "PATH_INFO": "/gen"})
    assert not hasattr(result, "__len__")
    result.close()


# -- outbound HTTP: what the server receives, what the caller gets ----------------------------
HTTP = PRELUDE + r"""
import http.client, socket, threading, urllib.request
if traced:
    from xray_autoinst.contrib import http_client, http_urllib3
    http_client.patch(); http_urllib3.patch()
import urllib3, requests

import os
keep_own = bool(os.environ.get("KEEP_AGENT_HEADER"))
received = []
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
port = listener.getsockname()[1]


def serve():
    while True:
        conn, _ = listener.accept()
        try:
            serve_one(conn)
        except OSError:  # a client that went away (a reset): next one
            pass


def serve_one(conn):
    if True:
        with conn:
            data = b""
            conn.settimeout(5)
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if b"\r\n\r\n" not in data:
                    break
                head, _, rest = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                chunked = False
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.lower() == "content-length":
                        length = int(v)
                    if k.lower() == "transfer-encoding" and "chunked" in v:
                        chunked = True
                if chunked:
                    while not rest.endswith(b"0\r\n\r\n"):
                        rest += conn.recv(65536)
                    body, data = rest, b""
                else:
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    body, data = rest[:length], rest[length:]
                # the agent's own headers are left out, unless the caller set one
                kept = [l for l in lines if keep_own or not (
                    l.startswith(("X-Amzn-Trace-Id:", "traceparent:", "tracestate:"))
                    and "caller" not in l)]
                received.append([kept, body.decode("latin-1")])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Resp: 1\r\n\r\nok")


threading.Thread(target=serve, daemon=True).start()
url = "http://127.0.0.1:%d" % port


raw = {}


def client(name, fn):
    def run():
        del received[:]
        raw[name] = [fn(), received[:]]
        return raw[name]
    return run


def plain():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/a?x=1", headers={"X-Custom": "1", "Accept": "*/*"})
    r = c.getresponse()
    out = [type(r).__name__, r.status, r.getheaders(), r.read().decode()]
    c.request("POST", "/again", body=b"xyz")  # the same connection, kept alive
    r = c.getresponse()
    out += [r.status, r.read().decode()]
    c.close()
    return out


def manual():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("POST", "/b", skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", "example.test")
    c.putheader("X-Multi", "a", "b")
    c.putheader("Content-Length", "4")
    c.endheaders(b"body")
    r = c.getresponse()
    return [r.status, r.read().decode()]


def caller_header():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/c",
              headers={"X-Amzn-Trace-Id": "Root=1-00000000-caller00000000000000000000"})
    r = c.getresponse()
    return [r.status, r.read().decode()]


def chunked():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("PUT", "/d", body=iter([b"ab", b"cd"]), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    return [r.status, r.read().decode()]


def with_urllib():
    req = urllib.request.Request(url + "/e", headers={"X-Custom": "2"}, data=b"q=1")
    with urllib.request.urlopen(req, timeout=10) as r:
        return [type(r).__name__, r.status, r.read().decode()]


def with_urllib3():
    pool = urllib3.PoolManager()
    r = pool.request("GET", url + "/f", headers={"X-Custom": "3"})
    r2 = pool.request("POST", url + "/f2", body=b"zz", headers={"Content-Type": "text/plain"})
    return [type(r).__name__, r.status, dict(r.headers), r.data.decode(), r2.status]


def with_requests():
    s = requests.Session()
    r = s.get(url + "/g", headers={"X-Custom": "4"}, params={"a": "b"})
    r2 = s.post(url + "/g2", json={"k": 1})
    return [type(r).__name__, r.status_code, dict(r.headers), r.text, r2.status_code]


for name, fn in [("http.client", plain), ("putrequest", manual), ("caller header", caller_header),
                 ("chunked", chunked), ("urllib", with_urllib), ("urllib3", with_urllib3),
                 ("requests", with_requests)]:
    check(name, client(name, fn))
check("invalid url", lambda: http.client.HTTPConnection("127.0.0.1:x"))
check("bad method", lambda: http.client.HTTPConnection("127.0.0.1", port).request("G T", "/"))
out["results"] = raw
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out, default=str).replace(str(port), "PORT"))
"""


def test_outbound_http_requests_and_results_as_bare():
    """What the server receives (request line, every header the caller set, in order, the
    body and its framing) and what the caller gets back (types, status, headers, errors) are
    the same with the agent, but for its own ``X-Amzn-Trace-Id`` header; one the caller set is
    sent as the caller set it."""
    _need("urllib3")
    _need("requests")
    bare = _compare(HTTP)
    assert bare["caller header"][0] == "ok"
    [[request_lines, _body]] = bare["results"]["caller header"][1]
    assert "X-Amzn-Trace-Id: Root=1-00000000-caller00000000000000000000" in request_lines
    # and the traced run did trace: every other request carried the agent's header, once
    own = _run(HTTP, "1", env_extra={"KEEP_AGENT_HEADER": "1"})["results"]
    for name, (_result, requests_seen) in own.items():
        for lines, _body in requests_seen:
            ids = [line for line in lines if line.startswith("X-Amzn-Trace-Id:")]
            assert len(ids) == 1, (name, lines)
            # W3C trace context beside it, once
            assert len([line for line in lines if line.startswith("traceparent:")]) == 1
            assert ("caller" in ids[0]) == (name == "caller header"), (name, ids)


PSYCOPG = PRELUDE + r"""
import asyncio, inspect
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
if traced:
    from xray_autoinst.contrib import db_psycopg
    db_psycopg.patch()
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
con = psycopg.connect(DSN)
cur = con.cursor()
check("connect", lambda: [describe(con)["type"], describe(cur)["type"]])
check("execute returns the cursor", lambda: cur.execute("select 1") is cur)
check("fetch", lambda: cur.execute("select %s, %s", (1, "a")).fetchall())
check("execute query=", lambda: cur.execute(query="select 2").fetchone())
check("execute params=", lambda: cur.execute("select %(x)s", params={"x": 3}).fetchone())
check("execute no args", lambda: cur.execute())
check("execute bad keyword", lambda: cur.execute("select 1", bogus=1))
check("execute self=", lambda: cur.execute("select 1", self=1))
check("execute syntax", lambda: cur.execute("selec 1"))
con.rollback()
check("execute wrong params", lambda: cur.execute("select %s", (1, 2)))
con.rollback()
check("composed", lambda: cur.execute(sql.SQL("select {}").format(sql.Literal(5))).fetchone())
check("executemany", lambda: cur.executemany("select %s", [(1,), (2,)]))
check("executemany returning", lambda: [
    cur.executemany("select %s", [(1,), (2,)], returning=True), cur.fetchone()])
check("connection.execute", lambda: con.execute("select 4").fetchone())
check("row factory", lambda: con.cursor(row_factory=dict_row).execute("select 1 as a").fetchone())
check("server cursor", lambda: con.cursor(name="srv").execute("select 1").fetchall())
con.rollback()
check("iscoroutinefunction", lambda: inspect.iscoroutinefunction(psycopg.AsyncCursor.execute))
check("signature", lambda: str(inspect.signature(psycopg.Cursor.execute)))


async def async_calls():
    acon = await psycopg.AsyncConnection.connect(DSN)
    acur = acon.cursor()
    results = [(await acur.execute("select %s", (1,))) is acur, await acur.fetchall()]
    try:
        await acur.execute("selec")
    except psycopg.Error as exc:
        results.append([type(exc).__name__, str(exc)])
    await acon.rollback()
    await acon.close()
    return results


check("async", lambda: asyncio.run(async_calls()))
con.close()
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out))
"""


def test_psycopg_arguments_results_errors_as_bare():
    _need("psycopg")
    from conftest import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432, "start PostgreSQL (scripts/services)")
    bare = _compare(PSYCOPG)
    assert bare["execute syntax"][1] == "psycopg.errors.SyntaxError"


FUTURES = PRELUDE + r"""
import concurrent.futures, threading
if traced:
    from xray_autoinst.contrib import ctx_futures, ctx_threading
    ctx_futures.patch(); ctx_threading.patch()


def fail():
    raise ValueError("task failed")


def task(*args, **kwargs):
    return [list(args), sorted(kwargs)]


with concurrent.futures.ThreadPoolExecutor(2) as ex:
    check("submit result", lambda: ex.submit(task, 1, fn=2).result())
    check("submit future type", lambda: ex.submit(task))
    check("submit error", lambda: ex.submit(fail).result())
    check("submit not callable", lambda: ex.submit(5).result())
    check("submit nothing", lambda: ex.submit())
    check("map", lambda: list(ex.map(abs, [-1, -2])))
    check("map error", lambda: list(ex.map(lambda x: 1 / x, [0])))
check("after shutdown", lambda: ex.submit(task))


def run_thread(**kw):
    seen = []
    t = threading.Thread(target=lambda *a, **k: seen.append([a, sorted(k)]), **kw)
    t.start()
    t.join()
    return [seen, t.is_alive(), t.daemon]


check("thread", lambda: run_thread(args=(1,), kwargs={"self": 2}))
check("thread daemon", lambda: run_thread(daemon=True))
check("thread started twice", lambda: [t := threading.Thread(target=int), t.start(), t.start()])


class Sub(threading.Thread):
    def run(self):
        self.result = threading.current_thread() is self


def subclass():
    t = Sub()
    t.start()
    t.join()
    return t.result


check("thread subclass", subclass)
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out))
"""


def test_threads_and_executor_as_bare():
    """Results, future types, task errors (type, message, traceback frames) and the
    executor's own errors are the same with the context-following wrappers."""
    bare = _compare(FUTURES)
    assert bare["submit error"][1] == "builtins.ValueError"


BOTOCORE = PRELUDE + r"""
import os
import boto3, botocore.exceptions
if traced:
    from xray_autoinst.contrib import aws_botocore, http_client, http_urllib3
    aws_botocore.patch(); http_client.patch(); http_urllib3.patch()
moto = sys.argv[2]
s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
ddb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
bucket = "b-" + sys.argv[1]
table = "t" + sys.argv[1]


def strip(resp):  # the parts that differ from run to run
    resp = dict(resp)
    meta = dict(resp.pop("ResponseMetadata", {}))
    return [sorted(resp), meta.get("HTTPStatusCode"), sorted(meta.get("HTTPHeaders", {}))]


def client_error(call):
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        return [type(exc).__name__, exc.response["Error"]["Code"],
                exc.operation_name, str(exc).replace(bucket, "B").replace(table, "T")]


check("create_bucket", lambda: strip(s3.create_bucket(Bucket=bucket)))
check("put_object", lambda: strip(s3.put_object(Bucket=bucket, Key="k", Body=b"v")))
check("get_object", lambda: s3.get_object(Bucket=bucket, Key="k")["Body"].read())
check("missing key", lambda: client_error(lambda: s3.get_object(Bucket=bucket, Key="nope")))
check("missing bucket", lambda: client_error(lambda: s3.head_bucket(Bucket=bucket + "-x")))
check("bad parameter", lambda: s3.put_object(Bucket=bucket))
check("bad parameter type", lambda: s3.put_object(Bucket=bucket, Key=5, Body=b""))
check("unknown keyword", lambda: s3.list_objects_v2(Bucket=bucket, Bogus=1))
check("positional", lambda: s3.list_objects_v2(bucket))
check("paginator", lambda: [len(p.get("Contents", [])) for p in
                            s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)])
check("create_table", lambda: strip(ddb.create_table(
    TableName=table, BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])))
check("get_item missing table", lambda: client_error(
    lambda: ddb.get_item(TableName=table + "x", Key={"id": {"S": "1"}})))
check("put/get", lambda: [
    ddb.put_item(TableName=table, Item={"id": {"S": "1"}})["ResponseMetadata"]["HTTPStatusCode"],
    ddb.get_item(TableName=table, Key={"id": {"S": "1"}})["Item"]])
if traced:
    tracer_mod.tracer.end_segment(seg, token)
print(json.dumps(out, default=str))
"""


def test_botocore_results_and_errors_as_bare():
    """boto3 calls against moto: response keys and headers, ``ClientError`` (type, code,
    operation, message), parameter validation errors and their tracebacks, as bare."""
    _need("boto3")
    _need("moto")
    from test_http_servers import start_moto

    proc, port = start_moto()
    try:
        moto = "http://127.0.0.1:%d" % port
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        bare = _run(BOTOCORE, "0", moto, env_extra=env)
        strict = _run(BOTOCORE, "1", moto, env_extra=env)
        user = _run(BOTOCORE, "2", moto, env_extra=dict(env, XRAY_AUTOINST_RAISE="0"))
    finally:
        proc.kill()
        proc.wait()
    for label in bare:
        assert strict[label][:3] == bare[label][:3], label
        assert user[label] == bare[label], label
    assert bare["missing key"][1]["repr"].startswith("['NoSuchKey', 'NoSuchKey'")
