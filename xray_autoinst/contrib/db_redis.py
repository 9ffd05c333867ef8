"""redis-py (sync ``Redis``): one ``remote`` subsegment per command and one per pipeline or
transaction execution, named ``redis@host:port`` so that the service map shows the server as
one node.

What is recorded (``metadata.redis``, see docs/redis.md): the command's name (``GET``,
``CONFIG GET``, ``JSON.SET``), the server's ``url`` (``redis://host:port/db``, never a user
name or password) and the database index; for a pipeline, ``PIPELINE`` or ``MULTI`` with the
names of the commands it sent. Never a key, a value or any other argument.

Wrapped: ``Redis.execute_command`` (every command method goes through it),
``Pipeline.execute`` and ``Pipeline.immediate_execute_command`` (commands sent at once while a
transaction WATCHes keys). Sentinel-managed clients are ``Redis`` objects and are traced the
same way (named after the sentinel service). ``redis.asyncio`` is db_redis_asyncio.py, built
on the helpers here. The cluster client (``RedisCluster``) has a code path of its own and is
not traced.
"""

from __future__ import annotations

import re

from ..config import clean_name
from ..core import tracer as _tracer_mod
from ..core.entities import Subsegment
from . import _calls, _guard

tracer = _tracer_mod.tracer
_get = _tracer_mod.current_entity.get

MAX_COMMANDS = 100  # pipeline command names listed (the count is always recorded)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.|-]{0,63}\Z")
# commands whose first argument is a sub-command (redis-py writes them as "CONFIG GET")
_CONTAINERS = frozenset({
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY",
    "MEMORY", "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
})
_names: dict = {}


def get_version():
    import redis

    return redis.__version__


# -- what is recorded ------------------------------------------------------------------------
def command_name(arg) -> str:
    """The name of a command from its first argument: upper-case words only. redis-py sends
    the words of a first argument separately (``execute_command("SET k v")`` works), so only
    the first word is kept, and a second one only after a container command."""
    if type(arg) is str:
        text = arg
    elif isinstance(arg, (bytes, bytearray, memoryview)):
        text = bytes(arg).decode("ascii", "replace")
    else:
        return "UNKNOWN"
    name = _names.get(text)
    if name is not None:
        return name
    words = text.split()
    if not words or not _WORD.match(words[0]):
        name = "UNKNOWN"
    else:
        name = words[0].upper()
        if len(words) > 1 and name in _CONTAINERS and _WORD.match(words[1]):
            name += " " + words[1].upper()
    if len(words) <= 2 and len(_names) < 1024:
        _names[text] = name
    return name


class ServerInfo:
    """What the subsegments of one connection pool share (computed once per pool)."""

    __slots__ = ("name", "base", "commands")

    def __init__(self, name, base):
        self.name = clean_name(name)[0]
        self.base = base
        self.commands = {}  # command name -> the finished metadata (shared, read-only)

    def metadata(self, command):
        meta = self.commands.get(command)
        if meta is None:
            fields = dict(self.base)
            fields["command"] = command
            meta = {"redis": fields}
            if len(self.commands) < 512:
                self.commands[command] = meta
        return meta

    def pipeline_metadata(self, stack, transaction):
        names = [command_name(args[0] if args else None) for args, _options in
                 (_entry(c) for c in stack[:MAX_COMMANDS])]
        fields = dict(self.base)
        fields["command"] = "MULTI" if transaction else "PIPELINE"
        fields["commands"] = names
        fields["command_count"] = len(stack)
        fields["transaction"] = bool(transaction)
        return {"redis": fields}


def _entry(c):
    """A pipeline stack entry: ``(args, options)`` in redis-py 4+ (a command object with
    ``args`` in some versions)."""
    if type(c) is tuple:
        return c
    return getattr(c, "args", ()), getattr(c, "options", {})


def server_info(pool) -> ServerInfo:
    return _calls.remembered(pool, "_xray_redis", _describe)


def _describe(pool) -> ServerInfo:
    kw = getattr(pool, "connection_kwargs", None) or {}
    db = kw.get("db", 0)
    try:
        db = int(db)
    except (TypeError, ValueError):
        db = 0
    service = getattr(pool, "service_name", None)  # SentinelConnectionPool
    cls = getattr(pool, "connection_class", None)
    tls = "SSL" in getattr(cls, "__name__", "")
    if service:
        name = "redis@%s" % service
        url = "redis+sentinel://%s/%d" % (service, db)
    elif kw.get("path"):
        path = str(kw["path"])
        name = "redis@" + path
        url = "unix://%s?db=%d" % (path, db)
    else:
        host = str(kw.get("host") or "localhost")
        port = kw.get("port") or 6379
        netloc = "[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)
        name = "redis@" + netloc
        url = "%s://%s/%d" % ("rediss" if tls else "redis", netloc, db)
    return ServerInfo(name, {"system": "redis", "url": url, "database_index": db})


# -- per call --------------------------------------------------------------------------------
fail_internal = _guard.reporter(
    "redis", "xray-autoinst Redis instrumentation failed (%s); the command is unaffected")


def recording() -> bool:
    """Would a subsegment be recorded here? Not inside another Redis subsegment (a pipeline
    loading its scripts, a client method calling another)."""
    parent = _get()
    if parent is None:
        return tracer.context_missing != "ignore"
    if not parent.sampled:
        return False
    return not (type(parent) is Subsegment and parent.metadata is not None
                and "redis" in parent.metadata)


def _open(client):
    """(server info, subsegment), or None when nothing is to be recorded."""
    info = server_info(client.connection_pool)
    sub = tracer.begin_subsegment(info.name, "remote")
    return None if sub is None else (info, sub)


def begin(client, args=None, stack=None, transaction=False):
    """Open the subsegment of one command (``args``) or one pipeline (``stack``)."""
    opened = _calls.attempt(fail_internal, "begin", _open, client)
    if opened is None:
        return None
    info, sub = opened
    try:
        if stack is None:
            sub.metadata = info.metadata(command_name(args[0] if args else None))
        else:
            sub.metadata = info.pipeline_metadata(stack, transaction)
    except Exception:  # noqa: BLE001
        sub.metadata = {"redis": {"system": "redis"}}
        fail_internal("fields")
    return sub


_PIPELINE_ERROR = ") of pipeline caused error: "


def safe_message(exc) -> str:
    """The exception's message without user data: Redis repeats a command's arguments in some
    errors (``unknown command 'x', with args beginning with: 'value'``) and redis-py puts the
    failed command of a pipeline in its message, so the message is cut at the first quote and
    a pipeline's command is left out."""
    msg = str(exc)
    if msg.startswith("Command # "):
        cut = msg.rfind(_PIPELINE_ERROR)
        if cut > 0:
            number = msg[10:].split(" ", 1)[0]
            msg = "Command # %s of pipeline caused error: %s" % (
                number, msg[cut + len(_PIPELINE_ERROR):])
    for quote in ("'", '"', "`"):
        cut = msg.find(quote)
        if cut >= 0:
            msg = msg[:cut].rstrip() + " ..."
    return msg[:500]


def close(sub, _result=None, exc=None) -> None:
    """Close the subsegment; the client's exception recorded with its message without user
    data."""
    _calls.end_remote(sub, exc, fail_internal, safe_message)


def is_transaction(pipe) -> bool:
    # sync pipelines keep the flag in ``transaction``; asyncio ones in ``is_transaction``
    # (their ``transaction`` is the inherited ``Redis.transaction`` method)
    flag = getattr(pipe, "is_transaction", None)
    if flag is None:
        flag = pipe.__dict__.get("transaction", False)
    return flag is True or getattr(pipe, "explicit_transaction", False) is True


def pipeline_begin(pipe):
    """The subsegment of a pipeline's ``execute``, or None when nothing goes to the server."""
    stack = pipe.command_stack
    if not stack and not getattr(pipe, "watching", False):
        return None
    return begin(pipe, stack=stack, transaction=is_transaction(pipe))


def command_state(client, args):
    """What a wrapper of one command hands to ``_calls``: its subsegment, or None."""
    return begin(client, args) if recording() else None


def pipeline_state(pipe):
    """What a wrapper of a pipeline's ``execute`` hands to ``_calls``: its subsegment, or None."""
    if not recording():
        return None
    return _calls.attempt(fail_internal, "pipeline", pipeline_begin, pipe)


# -- wrappers --------------------------------------------------------------------------------
def _traced_execute_command(wrapped, instance, args, kwargs):
    return _calls.call(command_state(instance, args), close, wrapped, args, kwargs)


def _traced_execute(wrapped, instance, args, kwargs):
    return _calls.call(pipeline_state(instance), close, wrapped, args, kwargs)


def targets(client, traced_command, traced_execute):
    """What the sync and the asyncio clients wrap, in ``client`` (``redis.client`` or
    ``redis.asyncio.client``)."""
    return (
        (client.Redis, "execute_command", traced_command),
        (client.Pipeline, "execute", traced_execute),
        (client.Pipeline, "immediate_execute_command", traced_command),
    )


def patch():
    from redis import client

    _calls.patch_targets(client, targets(client, _traced_execute_command, _traced_execute))


def unpatch():
    from redis import client

    _calls.unpatch_targets(client, targets(client, _traced_execute_command, _traced_execute))
