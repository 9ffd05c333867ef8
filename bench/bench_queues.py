"""Per-message overhead of the SQS consumer integration, and per-publish overhead of SQS
``SendMessage`` and Celery ``send_task``.

    .venv/bin/python bench/bench_queues.py [--quick] [--out PATH]

In-process, no network. Times are the calling thread's CPU time (``time.thread_time``), medians
over interleaved rounds.

Consumer: a ReceiveMessage response of 10 locally generated messages (each with an
``AWSTraceHeader``) goes through what the agent does with it (``after-call``: the header taken
out, the list replaced) and the application iterates it with an empty handler.

  bare            the plain list, no agent
  agent           the agent: one segment per message, begun on take, ended on the next take /
                  the end of the loop, handed to an emitter that drops it (encoding is the
                  emitter thread's job)
  agent+encode    the same, encoded to JSON on the calling thread (the worst case)
  manual segment  the segment's own cost: tracer.begin_segment(hdr) / end_segment per message
                  by hand, with the header parsed (what the agent cannot avoid)
  aws-xray-sdk    the same by hand with aws-xray-sdk's recorder (begin_segment/end_segment with
                  its emitter replaced by a no-op), where installed
  unsampled       the agent with ``Sampled=0`` headers

"beyond the segment" = agent - manual segment (the issue's target: <= 10 us per message).

Publish: ``sqs.send_message`` through botocore with a Stubber (no HTTP) inside a sampled
segment: bare (unpatched), botocore integration only, botocore + the SQS producer hook
(AWSTraceHeader stamped); Celery ``send_task`` on the memory transport: bare and patched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xray_autoinst import config as _config  # noqa: E402
from xray_autoinst.core import encoder, header  # noqa: E402
from xray_autoinst.core import tracer as _tracer_mod  # noqa: E402

CLOCK = time.thread_time
BATCH = 10
HDR = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=%s"


class EncodingEmitter:
    def __init__(self):
        self.documents = 0

    def submit(self, entity):
        self.documents += len(encoder.documents(entity))

    def send_document(self, doc):
        self.documents += 1
        return True

    def flush(self, timeout=0):
        pass


class NullEmitter(EncodingEmitter):
    def submit(self, entity):
        self.documents += 1


def make_tracer(emitter, rate=1.0):
    rules = '{"version": 2, "default": {"fixed_target": 0, "rate": %s}}' % rate
    cfg = _config.from_env({"XRAY_SAMPLING_RULES": rules, "XRAY_SAMPLING": "local"})
    return _tracer_mod.install(cfg, emitter)


def response(sampled="1"):
    return {"Messages": [
        {"MessageId": "m-%d" % i, "ReceiptHandle": "rh-%d" % i, "MD5OfBody": "x",
         "Body": "body %d" % i, "Attributes": {"AWSTraceHeader": HDR % sampled}}
        for i in range(BATCH)]}


# -- consumer variants: each returns seconds per message over one batch --------------------------
def consumer_bare():
    parsed = response()
    t0 = CLOCK()
    for msg in parsed["Messages"]:
        msg["Body"]
    return (CLOCK() - t0) / BATCH


def consumer_agent(sampled="1"):
    from xray_autoinst.contrib import aws_sqs

    parsed = response(sampled)
    context = {aws_sqs._CTX: ("https://sqs.us-east-1.amazonaws.com/1/jobs", True)}
    t0 = CLOCK()
    aws_sqs._wrap_messages(parsed=parsed, context=context)
    for msg in parsed["Messages"]:
        msg["Body"]
    return (CLOCK() - t0) / BATCH


def consumer_manual():
    tracer = _tracer_mod.tracer
    parsed = response()
    t0 = CLOCK()
    for msg in parsed["Messages"]:
        hdr = header.parse(msg["Attributes"]["AWSTraceHeader"])
        seg, token = tracer.begin_segment(None, hdr)
        msg["Body"]
        tracer.end_segment(seg, token)
    return (CLOCK() - t0) / BATCH


def sdk_recorder():
    try:
        from aws_xray_sdk.core import xray_recorder
    except ImportError:
        return None

    class _Drop:
        def send_entity(self, entity):
            pass

        def set_daemon_address(self, address):
            pass

    xray_recorder.configure(emitter=_Drop(), sampling=False, context_missing="IGNORE_ERROR",
                            service="bench")
    return xray_recorder


def consumer_sdk(recorder):
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    parsed = response()
    t0 = CLOCK()
    for msg in parsed["Messages"]:
        hdr = TraceHeader.from_header_str(msg["Attributes"]["AWSTraceHeader"])
        recorder.begin_segment("bench", traceid=hdr.root, parent_id=hdr.parent, sampling=1)
        msg["Body"]
        recorder.end_segment()
    return (CLOCK() - t0) / BATCH


# -- publish variants ----------------------------------------------------------------------------
def stubbed_sqs():
    import boto3
    from botocore.stub import ANY, Stubber

    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stub = Stubber(client)
    stub.activate()
    return client, stub, ANY


def publish_round(client, stub, any_, n, in_segment):
    tracer = _tracer_mod.tracer
    for _ in range(n):
        stub.add_response("send_message", {"MessageId": "m", "MD5OfMessageBody": "x"})
    seg, token = tracer.begin_segment("bench")
    t0 = CLOCK()
    for _ in range(n):
        client.send_message(QueueUrl="https://sqs.us-east-1.amazonaws.com/1/jobs",
                            MessageBody="body")
    dt = CLOCK() - t0
    tracer.end_segment(seg, token)
    return dt / n


def celery_app():
    try:
        import celery
    except ImportError:
        return None
    app = celery.Celery("bench", broker="memory://", set_as_current=False)
    app.conf.task_ignore_result = True
    conn = app.connection_for_write()
    producer = app.amqp.Producer(conn)
    return app, producer


def celery_round(app, producer, n):
    tracer = _tracer_mod.tracer
    seg, token = tracer.begin_segment("bench")
    t0 = CLOCK()
    for _ in range(n):
        app.send_task("bench.noop", (1, 2), producer=producer)
    dt = CLOCK() - t0
    tracer.end_segment(seg, token)
    return dt / n


# -- running ---------------------------------------------------------------------------------------
def measure(rounds, fns):
    """Interleaved rounds of every variant; per-variant list of per-round times (seconds)."""
    out = {name: [] for name in fns}
    names = list(fns)
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(fns[name]())
    return out


def run(quick):
    from xray_autoinst.contrib import aws_botocore, task_celery

    rounds = 60 if quick else 400
    results = {"consumer": {}, "publish": {}, "not_measured": []}
    null, enc = NullEmitter(), EncodingEmitter()
    recorder = sdk_recorder()

    def with_emitter(emitter, fn, *args, rate=1.0):
        def go():
            make_tracer(emitter, rate)
            return fn(*args)
        return go

    aws_botocore.patch()
    fns = {
        "bare": consumer_bare,
        "agent": with_emitter(null, consumer_agent),
        "agent+encode": with_emitter(enc, consumer_agent),
        "manual segment": with_emitter(null, consumer_manual),
        "unsampled": with_emitter(null, consumer_agent, "0"),
    }
    if recorder is not None:
        fns["aws-xray-sdk (by hand)"] = lambda: consumer_sdk(recorder)
    else:
        results["not_measured"].append("aws-xray-sdk: not installed")
    results["not_measured"].append("OpenTelemetry botocore SQS: not installed (not cheap here)")
    raw = measure(rounds, fns)
    aws_botocore.unpatch()
    results["consumer"] = {k: statistics.median(v) for k, v in raw.items()}
    results["consumer_beyond_segment"] = statistics.median(
        a - m for a, m in zip(raw["agent"], raw["manual segment"], strict=True))

    # publish
    n = 20
    make_tracer(null)
    client_bare, stub_bare, any_ = stubbed_sqs()
    aws_botocore.patch()
    client_t, stub_t, _ = stubbed_sqs()
    from xray_autoinst.contrib import aws_sqs

    hooks = dict(aws_botocore.HOOKS)

    def traced(stamp):
        def go():
            aws_botocore.HOOKS.clear()
            aws_sqs._state["patched"] = stamp  # the handlers on the client do nothing
            if stamp:
                aws_botocore.HOOKS.update(hooks)
            return publish_round(client_t, stub_t, any_, n, "stamp" if stamp else "plain")
        return go

    def bare():
        aws_botocore.unpatch()
        try:
            return publish_round(client_bare, stub_bare, any_, n, "plain")
        finally:
            aws_botocore.patch()

    pub = measure(max(10, rounds // 4), {"sqs bare": bare, "sqs botocore only": traced(False),
                                         "sqs botocore + AWSTraceHeader": traced(True)})
    aws_botocore.HOOKS.update(hooks)
    aws_sqs._state["patched"] = True
    aws_botocore.unpatch()
    cel = celery_app()
    if cel is not None:
        app, producer = cel

        def cbare():
            task_celery.unpatch()
            return celery_round(app, producer, n)

        def ctraced():
            task_celery.patch()
            try:
                return celery_round(app, producer, n)
            finally:
                task_celery.unpatch()

        pub.update(measure(max(10, rounds // 4), {"celery bare": cbare,
                                                  "celery patched": ctraced}))
    else:
        results["not_measured"].append("celery: not installed")
    results["publish"] = {k: statistics.median(v) for k, v in pub.items()}
    return results


def us(x):
    return "%.2f" % (x * 1e6)


def table(results):
    c = results["consumer"]
    bare = c["bare"]
    manual = c["manual segment"]
    lines = ["### Consumer, per message (10 messages per response, empty handler)", "",
             "| variant | median us/message | vs bare | vs manual segment |",
             "|---|---:|---:|---:|"]
    for name, v in c.items():
        lines.append("| %s | %s | +%s | %.2fx |" % (name, us(v), us(v - bare), v / manual))
    lines += ["", "Beyond the segment's own cost (agent - manual segment, paired): **%s us** "
              "per message (target <= 10 us)." % us(results["consumer_beyond_segment"]), "",
              "### Publish, per call (inside a sampled segment)", "",
              "| variant | median us/call | vs its bare |", "|---|---:|---:|"]
    p = results["publish"]
    for name, v in p.items():
        base = p["sqs bare"] if name.startswith("sqs") else p.get("celery bare", v)
        lines.append("| %s | %s | +%s (%.2fx) |" % (name, us(v), us(v - base), v / base))
    if results["not_measured"]:
        lines += ["", "Not measured: " + "; ".join(results["not_measured"]) + "."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a few seconds)")
    ap.add_argument("--out", help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    results = run(args.quick)
    results["unit"] = "seconds (thread CPU time), medians"
    print(table(results))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
