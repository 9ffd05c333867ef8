"""AWS Lambda: the facade segment (core), the awslambdaric integration in-process (the real
``handle_event_request`` with the Runtime API's C client replaced by a recorder), the fault
conversion, and the layer builder's options."""

import inspect
import json
import zipfile

import pytest
from xray_testing import skip_or_fail, validate

from xray_autoinst import config
from xray_autoinst.core import header
from xray_autoinst.core.tracer import current_entity

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
SAMPLED = f"Root={ROOT};Parent={PARENT};Sampled=1"
UNSAMPLED = f"Root={ROOT};Parent={PARENT};Sampled=0"


# -- core: the facade ----------------------------------------------------------------------------
def test_facade_children_are_standalone_subsegments_and_the_facade_never_sent(tracer):
    t, emitter = tracer
    seg, token = t.begin_facade(header.parse(SAMPLED), "fn")
    assert seg.id == PARENT and seg.trace_id == ROOT and current_entity.get() is seg
    sub = t.begin_subsegment("fn")
    inner = t.begin_subsegment("call", "remote")
    t.end_subsegment(inner)
    assert emitter.documents == []  # nested: sent with its parent
    t.end_subsegment(sub)
    t.end_facade(seg, token)
    assert current_entity.get() is None
    [doc] = emitter.documents
    validate(doc)
    assert doc["type"] == "subsegment"
    assert (doc["trace_id"], doc["parent_id"], doc["name"]) == (ROOT, PARENT, "fn")
    assert [s["name"] for s in doc["subsegments"]] == ["call"]
    # a second direct child goes out on its own as well; the facade itself never does
    seg, token = t.begin_facade(header.parse(SAMPLED), "fn")
    t.end_subsegment(t.begin_subsegment("again"))
    t.end_facade(seg, token)
    assert [d["name"] for d in emitter.documents] == ["fn", "again"]
    assert all(d["type"] == "subsegment" and d["parent_id"] == PARENT for d in emitter.documents)


@pytest.mark.parametrize("value", [
    UNSAMPLED,
    f"Root={ROOT};Parent={PARENT}",            # no decision: Lambda's to make, not ours
    f"Root={ROOT};Parent={PARENT};Sampled=?",
    f"Root={ROOT};Sampled=1",                  # no Parent to attach to
])
def test_facade_records_nothing_without_a_sampled_parent(tracer, value):
    t, emitter = tracer
    seg, token = t.begin_facade(header.parse(value), "fn")
    assert not seg.sampled
    assert t.begin_subsegment("fn") is None
    out = t.outgoing_header(None)
    assert out.startswith(f"Root={ROOT};") and out.endswith("Sampled=0")
    t.end_facade(seg, token)
    assert emitter.documents == [] and current_entity.get() is None


def test_facade_without_header(tracer):
    t, _ = tracer
    assert t.begin_facade(None) == (None, None)
    t.end_facade(None, None)


# -- configuration -------------------------------------------------------------------------------
def test_function_name_is_cleaned_and_trace_header_read_per_call():
    cfg = config.from_env({"AWS_LAMBDA_FUNCTION_NAME": "my\\fn"})
    assert cfg.lambda_function_name == "my_fn"
    assert config.from_env({}).lambda_function_name is None
    assert config.lambda_trace_header({"_X_AMZN_TRACE_ID": SAMPLED}) == SAMPLED
    assert config.lambda_trace_header({}) is None


# -- awslambdaric in-process -----------------------------------------------------------------------
class FakeRapid:
    """Stands in for awslambdaric's C ``runtime_client``: records posts, with the documents the
    emitter held at that moment."""

    def __init__(self, emitter):
        self.emitter = emitter
        self.posts = []

    def post_invocation_result(self, invoke_id, data, content_type, invocation_id=None):
        self.posts.append(("result", invoke_id, data, len(self.emitter.documents)))

    def post_error(self, invoke_id, error, xray_fault, invocation_id=None):
        self.posts.append(("error", invoke_id, error, len(self.emitter.documents)))


@pytest.fixture
def lambda_rt(tracer, monkeypatch):
    try:
        from awslambdaric import bootstrap, lambda_runtime_client
    except ImportError as exc:  # in requirements-test.txt: missing under CI is a failure
        skip_or_fail(f"awslambdaric is not installed ({exc})")

    from xray_autoinst.contrib import lambda_awslambdaric as mod

    t, emitter = tracer
    t.config = t.config.replace(lambda_function_name="my-fn")
    rapid = FakeRapid(emitter)
    monkeypatch.setattr(lambda_runtime_client, "runtime_client", rapid)
    monkeypatch.setitem(mod._state, "cold", True)
    mod.patch()
    client = lambda_runtime_client.LambdaRuntimeClient("127.0.0.1:9")
    params = inspect.signature(bootstrap.handle_event_request).parameters

    def invoke(handler, request_id, trace=None, event=None):
        if trace is None:
            monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
        else:
            monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
        kwargs = {
            "event_body": json.dumps(event or {}).encode(), "content_type": "application/json",
            "client_context_json": None, "cognito_identity_json": None,
            "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
            "epoch_deadline_time_in_ms": "9999999999999", "log_sink": bootstrap.StandardLogSink(),
        }
        if "tenant_id" in params:  # awslambdaric 4
            kwargs["tenant_id"] = None
        # positionally up to the request id, as bootstrap.run calls it
        bootstrap.handle_event_request(client, handler, request_id, **kwargs)

    yield t, emitter, rapid, invoke
    mod.unpatch()


def test_invocations_one_subsegment_each_sent_before_the_post(lambda_rt):
    t, emitter, rapid, invoke = lambda_rt

    def ok(event, context):
        sub = t.begin_subsegment("dynamodb", "aws")
        if sub is not None:  # as integrations do: None when nothing is recorded
            t.end_subsegment(sub)
        return {"n": 1}

    def boom(event, context):
        raise ValueError("no secret here")

    invoke(ok, "r1", SAMPLED)
    invoke(boom, "r2", SAMPLED.replace("bd86", "aaaa"))
    invoke(ok, "r3", UNSAMPLED)
    invoke(ok, "r4", None)
    assert [(p[0], p[1]) for p in rapid.posts] == [
        ("result", "r1"), ("error", "r2"), ("result", "r3"), ("result", "r4")]
    assert rapid.posts[0][2] == b'{"n": 1}'
    # each document was there when its result was posted; nothing for r3 and r4
    assert [p[3] for p in rapid.posts] == [1, 2, 2, 2]
    first, second = emitter.documents
    for doc in (first, second):
        validate(doc)
        assert doc["type"] == "subsegment" and doc["name"] == "my-fn"
    assert (first["trace_id"], first["parent_id"]) == (ROOT, PARENT)
    assert first["annotations"] == {"cold_start": True}
    assert first["aws"] == {"request_id": "r1"}
    assert [s["name"] for s in first["subsegments"]] == ["dynamodb"]
    assert "fault" not in first
    assert second["trace_id"] == ROOT.replace("bd86", "aaaa")
    assert second["annotations"] == {"cold_start": False}
    assert second["fault"] is True
    [exc] = second["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("ValueError", "no secret here")
    assert exc["stack"][0]["label"] == "boom"  # most recent frame first
    assert current_entity.get() is None


def test_the_runtime_reports_the_same_error_as_without_the_agent(lambda_rt, monkeypatch):
    from xray_autoinst.contrib import lambda_awslambdaric as mod

    _t, _emitter, rapid, invoke = lambda_rt

    def boom(event, context):
        raise KeyError("k")

    invoke(boom, "r1", SAMPLED)
    mod.unpatch()
    invoke(boom, "r2", SAMPLED)
    traced, bare = (json.loads(p[2]) for p in rapid.posts)
    assert traced["stackTrace"] == bare["stackTrace"]
    assert traced["errorType"] == bare["errorType"] == "KeyError"
    assert not any("xray_autoinst" in line for line in traced["stackTrace"])


def test_handler_result_that_cannot_be_marshalled_is_a_fault(lambda_rt):
    _t, emitter, rapid, invoke = lambda_rt
    invoke(lambda e, c: object(), "r1", SAMPLED)
    assert rapid.posts[0][0] == "error"
    [doc] = emitter.documents
    validate(doc)
    assert doc["fault"] is True
    assert doc["cause"]["exceptions"][0]["type"] == "LambdaValidationError"  # as the runtime says


@pytest.mark.parametrize("fault", [
    "", "not json", "[]", '{"exceptions": "x"}', '{"exceptions": [1, {"stack": [3]}]}',
    json.dumps({"working_directory": 5, "exceptions": [
        {"message": "m" * 5000, "type": "T", "stack": [{"path": "p", "line": "x"}] * 200}]}),
])
def test_fault_conversion_always_valid(fault):
    from xray_autoinst.contrib.lambda_awslambdaric import _cause

    cause = _cause(fault)
    doc = {"name": "n", "id": "0123456789abcdef", "trace_id": ROOT, "start_time": 1.0,
           "end_time": 2.0, "fault": True, "cause": cause}
    validate(doc)
    assert len(json.dumps(cause)) < 8000


# -- the layer builder ---------------------------------------------------------------------------
def test_layer_builder_rejects_bad_options(tmp_path, capsys):
    from xray_autoinst.lambda_layer import main

    out = str(tmp_path / "l.zip")
    assert main(["-o", out, "--python", "3.9"]) == 2
    assert "3.10 or later" in capsys.readouterr().err
    assert main(["-o", out, "--arch", "sparc"]) == 2
    assert main(["-o", out, "--python", "three"]) == 2
    assert main(["--python"]) == 2
    assert main([]) == 2
    assert not (tmp_path / "l.zip").exists()


def test_layer_layout_without_compiling(tmp_path):
    from xray_autoinst.lambda_layer import build

    out = tmp_path / "layer.zip"
    assert build(str(out), compile=False) == []
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        info = zf.getinfo("xray-run")
        assert (info.external_attr >> 16) & 0o777 == 0o755
        assert zf.read("xray-run").startswith(b"#!/bin/sh\n")
    assert "python/xray_autoinst/_startup/sitecustomize.py" in names
    assert "python/xray_autoinst/contrib/lambda_awslambdaric.py" in names
    assert not any("__pycache__" in n for n in names)


def test_snap_start_first_invocation_gets_fresh_ids(lambda_rt, monkeypatch):
    from xray_autoinst.core import ids

    t, emitter, _rapid, invoke = lambda_rt
    t.config = t.config.replace(lambda_snap_start=True)
    reseeded = []
    monkeypatch.setattr(ids, "reseed", lambda: reseeded.append(1))
    invoke(lambda e, c: 1, "r1", SAMPLED)
    invoke(lambda e, c: 2, "r2", SAMPLED)
    assert reseeded == [1]  # once: at the first invocation after the restore
    assert [d["annotations"]["cold_start"] for d in emitter.documents] == [True, False]
    assert config.from_env({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}).lambda_snap_start
    assert not config.from_env({"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}).lambda_snap_start


def test_sampling_is_local_in_lambda_unless_asked():
    assert config.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f"}).sampling_mode == "local"
    env = {"AWS_LAMBDA_FUNCTION_NAME": "f", "XRAY_SAMPLING": "centralized"}
    assert config.from_env(env).sampling_mode == "centralized"
    assert config.from_env({}).sampling_mode == "centralized"
