"""Emission throughput: documents serialized (``encoder.documents``) and sent
(``Emitter.send_document``) per second, for a bare web-request segment and for a segment with
10 subsegments (SQL, HTTP and AWS calls), to a UDP sink on loopback. Also the two halves alone
(encode only; send only, of a pre-encoded document) to show where the time goes.

    python bench/emission_worker.py '{"sink": "127.0.0.1:2000", "windows": 5, "window_s": 0.5}'
"""

from __future__ import annotations

import json
import sys
import time

from benchlib import emit_result, rotate, summary


def segments():
    from xray_autoinst.core import ids
    from xray_autoinst.core.entities import Segment, Subsegment

    now = time.time()

    def web_segment():
        seg = Segment("bench-web", ids.trace_id(now), None, start_time=now)
        seg.http = {
            "request": {"method": "GET", "url": "http://localhost:8000/orders/42?expand=items",
                        "client_ip": "127.0.0.1", "user_agent": "bench/1.0"},
            "response": {"status": 200, "content_length": 512},
        }
        seg.end_time = now + 0.005
        return seg

    bare = web_segment()
    big = web_segment()
    for i in range(10):
        kind = i % 3
        if kind == 0:
            sub = Subsegment("orders@db", big, "remote", start_time=now + i * 0.0004)
            sub.sql = {"url": "postgresql://db:5432/orders", "database_type": "PostgreSQL",
                       "database_version": "16.2", "driver_version": "psycopg 3.2",
                       "user": "app", "sanitized_query":
                       "SELECT id, total, status FROM orders WHERE id = %s AND tenant = %s"}
        elif kind == 1:
            sub = Subsegment("inventory.internal", big, "remote", start_time=now + i * 0.0004)
            sub.http = {"request": {"method": "GET",
                                    "url": "http://inventory.internal/items/42"},
                        "response": {"status": 200, "content_length": 1024}}
        else:
            sub = Subsegment("DynamoDB", big, "aws", start_time=now + i * 0.0004)
            sub.aws = {"operation": "GetItem", "table_name": "carts", "region": "us-east-1",
                       "request_id": "R%020d" % i, "retries": 0}
            sub.http = {"response": {"status": 200}}
        sub.end_time = now + i * 0.0004 + 0.0003
        if big.subsegments is None:
            big.subsegments = []
        big.subsegments.append(sub)
    return {"bare segment": bare, "segment + 10 subsegments": big}


def rate(fn, window_s):
    """Calls of ``fn`` per second over a window (fn does ``k`` documents per call)."""
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + window_s
    while True:
        for _ in range(100):
            fn()
        n += 100
        t1 = time.perf_counter()
        if t1 >= deadline:
            return n / (t1 - t0)


def main(spec) -> dict:
    from xray_autoinst import __version__
    from xray_autoinst.core import encoder
    from xray_autoinst.core.emitter import Emitter

    host, port = spec["sink"].rsplit(":", 1)
    emitter = Emitter((host, int(port)))
    documents = encoder.documents
    send = emitter.send_document
    out = {}
    for name, seg in segments().items():
        docs = documents(seg)
        assert len(docs) == 1, docs
        doc = docs[0]

        def both(seg=seg):
            for d in documents(seg):
                send(d)

        def encode(seg=seg):
            documents(seg)

        def send_only(doc=doc):
            send(doc)

        fns = {"encode+send": both, "encode only": encode, "send only": send_only}
        rates = {label: [] for label in fns}
        sent_before = emitter.sent
        for fn in fns.values():
            fn()
        # the three interleaved window by window: drift on the machine hits them alike
        for i in range(spec["windows"]):
            for label in rotate(list(fns), i):
                rates[label].append(rate(fns[label], spec["window_s"]))
        results = {"document_bytes": len(doc.encode())}
        results.update({label: summary(r) for label, r in rates.items()})
        results["datagrams_sent"] = emitter.sent - sent_before
        results["send_errors"] = emitter.errors
        out[name] = results
    return {"results": out, "versions": {"xray-autoinst": __version__},
            "python": sys.version.split()[0]}


if __name__ == "__main__":
    emit_result(main(json.loads(sys.argv[1])))
