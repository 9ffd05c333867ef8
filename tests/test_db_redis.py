"""redis-py, sync and asyncio, in-process against the real Redis on 127.0.0.1:6379: one
subsegment per command and per pipeline execution, named after the server, the command names
and never a key or a value, errors with redis-py's own exception, nothing outside a request,
concurrent asyncio tasks each under their own request, and unpatch restores."""

import asyncio
import contextlib
import inspect

import pytest
from sqltrace import assert_no_secret, request_segment, walk
from xray_testing import install_tracer, need, validate

redis = need("redis")
import redis.asyncio  # noqa: E402, F811

from xray_autoinst.contrib import db_redis, db_redis_asyncio  # noqa: E402
from xray_autoinst.core import wrapping  # noqa: E402

SECRET = "redis-value-secret-7f3a"
KEY = "xray-test-key-secret-91c2"
NAME = "redis@127.0.0.1:6379"


@pytest.fixture(autouse=True)
def _redis():
    from conftest import require_service

    require_service("Redis", "127.0.0.1", 6379,
                    "start it with scripts/services.sh (apt-get install redis-server)")


@pytest.fixture
def traced(tracer):
    db_redis.patch()
    db_redis_asyncio.patch()
    yield tracer
    db_redis.unpatch()
    db_redis_asyncio.unpatch()


async def aclose(client):
    close = getattr(client, "aclose", None) or client.close  # aclose: redis-py 5.0.1+
    await close()


def redis_subsegments(emitter):
    found = []
    for doc in emitter.documents:
        validate(doc)
        for entity, _parent in walk(doc):
            if "redis" in entity.get("metadata", {}):
                found.append(entity)
    return sorted(found, key=lambda s: s["start_time"])


def fields(sub):
    return sub["metadata"]["redis"]


def test_commands(traced):
    t, emitter = traced
    client = redis.Redis(host="127.0.0.1", port=6379, db=3, password=None)
    with request_segment(t) as seg:
        assert client.set(KEY, SECRET) is True
        assert client.get(KEY) == SECRET.encode()
        assert client.config_get("maxmemory")  # a container command: "CONFIG GET"
        assert client.execute_command(f"SET {KEY} {SECRET}") is not None  # words in one arg
        assert client.delete(KEY) == 1
    subs = redis_subsegments(emitter)
    assert [fields(s)["command"] for s in subs] == ["SET", "GET", "CONFIG GET", "SET", "DEL"]
    for s in subs:
        assert s["name"] == NAME
        assert s["namespace"] == "remote"
        assert "sql" not in s and "subsegments" not in s
        assert fields(s)["url"] == "redis://127.0.0.1:6379/3"
        assert fields(s)["database_index"] == 3
        assert fields(s)["system"] == "redis"
    [doc] = emitter.documents
    assert doc["id"] == seg.id
    assert_no_secret(emitter, SECRET, KEY, "maxmemory")


def test_pipeline_and_transaction(traced):
    t, emitter = traced
    client = redis.Redis(host="127.0.0.1", port=6379)
    with request_segment(t):
        with client.pipeline(transaction=False) as pipe:
            pipe.set(KEY, SECRET).get(KEY).incr(KEY + "-n")
            assert pipe.execute()[:2] == [True, SECRET.encode()]
        with client.pipeline() as pipe:  # MULTI ... EXEC
            pipe.set(KEY, SECRET)
            pipe.delete(KEY, KEY + "-n")
            assert pipe.execute() == [True, 2]
        with client.pipeline() as pipe:  # WATCH: the commands before MULTI go at once
            pipe.watch(KEY)
            assert pipe.get(KEY) is None
            pipe.multi()
            pipe.set(KEY, SECRET)
            pipe.delete(KEY)
            assert pipe.execute() == [True, 1]
        with client.pipeline() as pipe:  # nothing queued: nothing sent, nothing recorded
            assert pipe.execute() == []
    subs = redis_subsegments(emitter)
    got = [(fields(s)["command"], fields(s).get("commands"), fields(s).get("transaction"))
           for s in subs]
    assert got == [
        ("PIPELINE", ["SET", "GET", "INCRBY"], False),
        ("MULTI", ["SET", "DEL"], True),
        ("WATCH", None, None),
        ("GET", None, None),
        ("MULTI", ["SET", "DEL"], True),
    ]
    assert all(s["name"] == NAME for s in subs)
    assert [fields(s).get("command_count") for s in subs] == [3, 2, None, None, 2]
    assert_no_secret(emitter, SECRET, KEY)


def test_errors_pass_through(traced):
    t, emitter = traced
    client = redis.Redis(host="127.0.0.1", port=6379)
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with request_segment(t):
        client.set(KEY, SECRET)
        with pytest.raises(redis.ResponseError) as info:
            client.lpush(KEY, SECRET)  # WRONGTYPE
        with pytest.raises(redis.ConnectionError) as info2:
            down.get(KEY)
        with client.pipeline() as pipe:
            pipe.set(KEY, SECRET).lpush(KEY, SECRET)
            with pytest.raises(redis.ResponseError):
                pipe.execute()
        client.delete(KEY)
    assert "WRONGTYPE" in str(info.value)
    subs = redis_subsegments(emitter)
    failed = [s for s in subs if s.get("fault")]
    assert [(fields(s)["command"], s["cause"]["exceptions"][0]["type"]) for s in failed] == [
        ("LPUSH", "ResponseError"), ("GET", "ConnectionError"), ("MULTI", "ResponseError")]
    assert failed[1]["name"] == "redis@127.0.0.1:1"
    assert all(s["cause"]["exceptions"][0]["remote"] is True for s in failed)
    assert failed[0]["cause"]["exceptions"][0]["message"] == str(info.value)
    assert type(info2.value) is redis.ConnectionError
    # redis-py names the pipeline's failed command with its arguments: not recorded
    assert failed[2]["cause"]["exceptions"][0]["message"] == (
        "Command # 2 of pipeline caused error: WRONGTYPE Operation against a key holding the "
        "wrong kind of value")
    assert_no_secret(emitter, SECRET, KEY)


def test_nothing_outside_a_request(traced):
    _t, emitter = traced
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.set(KEY, SECRET)
    client.pipeline().get(KEY).execute()
    client.delete(KEY)
    assert emitter.documents == []


def test_unsampled_request_records_nothing(traced):
    t, emitter = traced
    client = redis.Redis(host="127.0.0.1", port=6379)
    seg, token = t.begin_segment("unsampled", sampled=False)
    client.ping()
    t.end_segment(seg, token)
    assert emitter.documents == []


def test_unix_socket_and_url_without_password(traced):
    t, emitter = traced
    client = redis.Redis.from_url("redis://:pw-secret-x@127.0.0.1:6379/2")
    with request_segment(t):
        with contextlib.suppress(redis.RedisError):  # whether the server wants one or not
            client.ping()
    [s] = redis_subsegments(emitter)
    assert fields(s)["url"] == "redis://127.0.0.1:6379/2"
    assert_no_secret(emitter, "pw-secret-x")
    info = db_redis._describe(redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection, path="/tmp/r.sock", db=1))
    assert (info.name, info.base["url"]) == ("redis@/tmp/r.sock", "unix:///tmp/r.sock?db=1")


def test_command_names():
    assert db_redis.command_name("get") == "GET"
    assert db_redis.command_name(b"JSON.SET") == "JSON.SET"
    assert db_redis.command_name("CLIENT LIST") == "CLIENT LIST"
    assert db_redis.command_name("SET key value") == "SET"
    assert db_redis.command_name("CONFIG secret'x") == "CONFIG"
    assert db_redis.command_name("'quoted secret'") == "UNKNOWN"
    assert db_redis.command_name(42) == "UNKNOWN"
    assert db_redis.command_name("") == "UNKNOWN"


def test_unpatch_restores():
    originals = (redis.Redis.execute_command, redis.client.Pipeline.execute,
                 redis.asyncio.Redis.execute_command, redis.asyncio.client.Pipeline.execute)
    db_redis.patch()
    db_redis_asyncio.patch()
    assert wrapping.is_wrapped(redis.Redis.execute_command)
    assert inspect.iscoroutinefunction(redis.asyncio.Redis.execute_command)
    assert inspect.iscoroutinefunction(redis.asyncio.client.Pipeline.execute)
    assert inspect.iscoroutinefunction(redis.asyncio.client.Pipeline.immediate_execute_command)
    db_redis.unpatch()
    db_redis_asyncio.unpatch()
    assert (redis.Redis.execute_command, redis.client.Pipeline.execute,
            redis.asyncio.Redis.execute_command,
            redis.asyncio.client.Pipeline.execute) == originals


# -- redis.asyncio ---------------------------------------------------------------------------
def test_asyncio_commands_and_pipeline(traced):
    t, emitter = traced

    async def main():
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379, db=1)
        try:
            assert await client.set(KEY, SECRET) is True
            assert await client.get(KEY) == SECRET.encode()
            async with client.pipeline() as pipe:
                pipe.get(KEY).delete(KEY)
                assert await pipe.execute() == [SECRET.encode(), 1]
            with pytest.raises(redis.ResponseError):
                await client.execute_command("NOSUCHCOMMAND", KEY)
        finally:
            await aclose(client)

    with request_segment(t):
        asyncio.run(main())
    subs = redis_subsegments(emitter)
    assert [(fields(s)["command"], fields(s).get("commands")) for s in subs] == [
        ("SET", None), ("GET", None), ("MULTI", ["GET", "DEL"]), ("NOSUCHCOMMAND", None)]
    assert all(s["name"] == NAME and fields(s)["url"] == "redis://127.0.0.1:6379/1"
               for s in subs)
    assert subs[-1]["fault"] and subs[-1]["cause"]["exceptions"][0]["type"] == "ResponseError"
    assert_no_secret(emitter, SECRET, KEY)


def test_asyncio_concurrent_requests_do_not_mix(traced):
    t, emitter = traced

    async def request(client, n):
        seg, token = t.begin_segment(f"req-{n}")
        try:
            for _ in range(3):
                await client.incr(f"{KEY}-{n}")
                await asyncio.sleep(0)
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(f"{KEY}-{n}").delete(f"{KEY}-{n}")
                await pipe.execute()
        finally:
            t.end_segment(seg, token)
        return seg.id

    async def main():
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        try:
            return await asyncio.gather(*(request(client, n) for n in range(8)))
        finally:
            await aclose(client)

    ids = asyncio.run(main())
    docs = {d["id"]: d for d in emitter.documents}
    assert sorted(docs) == sorted(ids)
    for n, seg_id in enumerate(ids):
        doc = docs[seg_id]
        validate(doc)
        assert doc["name"] == f"req-{n}"
        cmds = [fields(s)["command"] for s in doc["subsegments"]]
        assert cmds == ["INCRBY"] * 3 + ["PIPELINE"], cmds
    assert_no_secret(emitter, KEY)


def test_asyncio_nothing_outside_a_request(traced):
    _t, emitter = traced

    async def main():
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        await client.ping()
        await aclose(client)

    asyncio.run(main())
    assert emitter.documents == []


def test_context_missing_process_records_calls():
    t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "process"})
    db_redis.patch()
    try:
        redis.Redis(host="127.0.0.1", port=6379).ping()
        t.shutdown()
    finally:
        db_redis.unpatch()
    subs = redis_subsegments(emitter)
    assert [fields(s)["command"] for s in subs] == ["PING"]


def test_sentinel_and_tls_names():
    from redis.sentinel import Sentinel, SentinelConnectionPool

    pool = SentinelConnectionPool("mymaster", Sentinel([("127.0.0.1", 26379)]), db=2)
    info = db_redis._describe(pool)
    assert (info.name, info.base["url"]) == ("redis@mymaster", "redis+sentinel://mymaster/2")
    tls = db_redis._describe(redis.ConnectionPool(
        connection_class=redis.SSLConnection, host="cache.internal", port=6380))
    assert (tls.name, tls.base["url"]) == ("redis@cache.internal:6380",
                                           "rediss://cache.internal:6380/0")
