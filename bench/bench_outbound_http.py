"""Per-call overhead of the outbound HTTP and botocore integrations, against the bare call.

    .venv/bin/python bench/bench_outbound_http.py            # full run (about a minute)
    .venv/bin/python bench/bench_outbound_http.py --quick    # a few seconds
    .venv/bin/python bench/bench_outbound_http.py --out .bench/outbound_http.json
    .venv/bin/python bench/bench_outbound_http.py --instructions   # + callgrind counts

Cases (the first isolates the client's CPU: no network, no server), each measured in this
process with the integrations unpatched ("bare"), patched with no request open ("patched, no
trace"), and patched inside sampled segments of 10 calls each ("traced": one subsegment per
call, the segment's own cost included):

- http.client, in-memory socket: ``request`` + ``getresponse`` + ``read`` on a connection whose
  socket is a stand-in answering a canned response, cycling over 20 URLs as a client calling
  its usual endpoints does (what a request line records is computed once per URL);
- the same with a URL never seen before on every call (the uncached path);
- http.client keep-alive: the 20 URLs on one connection to a
  loopback server in another process that answers a fixed response (no Python HTTP parsing on
  the server side, so the client dominates);
- http.client new connection: the same with a new connection per call (connect, dns, dial
  recorded);
- botocore -> loopback stub: ``dynamodb.get_item`` answered by the same kind of fixed responder;
- botocore -> moto: ``dynamodb.get_item`` against a moto server process.

Variants run interleaved in rounds (bare, patched, traced, rotated) so drift hits all alike;
each figure is the median over rounds of a batch's mean per-call time, and the overhead is the
median of the per-round differences. The emitter is a null one: encoding and sending happen on
the agent's background thread in production, off the request path, and are measured by the
emission benchmark (bench/run.py). Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RESPONDER = r"""
import socket, sys, threading
BODY = sys.argv[1].encode()
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"x-amzn-RequestId: bench-request\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY

def serve(c):
    buf = b""
    with c:
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(buf) < length:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[length:]
            c.sendall(RESP)

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(512)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

ITEM = '{"Item": {"id": {"S": "1"}}}'
CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


class CannedSocket:
    """A connected socket that swallows the request and answers a fixed response: the
    http.client exchange with no network at all, so only client-side CPU is measured."""

    def sendall(self, data):
        pass

    def makefile(self, mode):
        return io.BytesIO(CANNED)

    def settimeout(self, timeout):
        pass

    def close(self):
        pass


class NullEmitter:
    def submit(self, entity):
        pass

    def send_document(self, doc):
        return True

    def flush(self, timeout=0):
        pass


def start_responder(body):
    proc = subprocess.Popen([sys.executable, "-c", RESPONDER, body], stdout=subprocess.PIPE,
                            text=True)
    return proc, int(proc.stdout.readline())


def start_moto():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_http_servers import start_moto as start

    return start()


# -- the integrations, switched between variants -----------------------------------------------
def patch_all(on):
    from xray_autoinst.contrib import aws_botocore, http_client, http_urllib3

    for mod in (http_client, http_urllib3, aws_botocore):
        mod.patch() if on else mod.unpatch()


def install_tracer():
    from xray_autoinst import config
    from xray_autoinst.core import tracer as tracer_mod

    return tracer_mod.install(config.from_env({
        "XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}',
        "XRAY_SERVICE_NAME": "bench",
    }), emitter=NullEmitter())


PER_SEGMENT = 10  # calls per request segment in the traced variant


def batch(call, n, tracer=None):
    """Mean (wall, thread CPU) seconds per call over ``n`` calls; traced: in sampled segments
    of PER_SEGMENT calls each, as a request making a few calls (segment cost included)."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    if tracer is None:
        for _ in range(n):
            call()
    else:
        begin, end = tracer.begin_segment, tracer.end_segment
        for _ in range(0, n, PER_SEGMENT):
            seg, token = begin("bench")
            for _ in range(PER_SEGMENT):
                call()
            end(seg, token)
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    return elapsed / n, cpu / n


VARIANTS = ("bare", "patched, no trace", "traced")


def measure(name, call, n, rounds, tracer, warmup=100):
    samples = {v: [] for v in VARIANTS}
    for v in VARIANTS:  # warm every path once
        patch_all(v != "bare")
        batch(call, warmup, tracer if v == "traced" else None)
    for r in range(rounds):
        order = VARIANTS[r % 3:] + VARIANTS[: r % 3]
        for v in order:
            patch_all(v != "bare")
            # (un)patching changes classes, which resets the interpreter's specialised code
            # for them: untimed calls first, so no variant pays for that
            batch(call, warmup, tracer if v == "traced" else None)
            samples[v].append(batch(call, n, tracer if v == "traced" else None))
    patch_all(False)
    row = {"case": name, "calls_per_batch": n, "rounds": rounds}
    for i, clock in enumerate(("wall", "cpu")):
        bare = [s[i] for s in samples["bare"]]
        for v in VARIANTS:
            mine = [s[i] for s in samples[v]]
            entry = row.setdefault(v, {})
            entry[clock + "_us"] = statistics.median(mine) * 1e6
            if v != "bare":
                entry[clock + "_overhead_us"] = statistics.median(
                    [(a - b) * 1e6 for a, b in zip(mine, bare, strict=True)])
                entry[clock + "_ratio"] = statistics.median(mine) / statistics.median(bare)
    return row


# -- instruction counts (callgrind): what a call costs, whatever else runs on the machine ------
def _count_child(variant, case, n):
    """Run ``n`` calls (after a warm-up) in this process: the body callgrind counts."""
    import http.client

    tracer = install_tracer()
    if variant != "bare":
        patch_all(True)
    turn = itertools.count()
    responder = None
    if case == "botocore":
        import boto3

        responder, port = start_responder(ITEM)
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}",
                              region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")

        def call():
            client.get_item(TableName="orders", Key={"id": {"S": "1"}})
    else:
        conn = http.client.HTTPConnection("127.0.0.1", 8080)
        conn.sock = CannedSocket()
        paths = ["/items/%d?page=2" % i for i in range(20)]

        def call():
            i = next(turn)
            conn.request("GET", "/items/%d?page=2" % i if case == "unique" else paths[i % 20])
            conn.getresponse().read()
    try:
        for _ in range(50 if case == "botocore" else 200):
            call()
        if variant == "traced":
            for _ in range(n // PER_SEGMENT):
                seg, token = tracer.begin_segment("bench")
                for _ in range(PER_SEGMENT):
                    call()
                tracer.end_segment(seg, token)
        else:
            for _ in range(n):
                call()
    finally:
        if responder is not None:
            responder.terminate()
            responder.wait(10)


def instructions(n=2000):
    """Instructions per call (callgrind, PYTHONHASHSEED=0): runs with 0 and ``n`` calls, the
    difference divided by ``n``, for bare, patched-no-trace and traced."""
    import re
    import shutil

    if not shutil.which("valgrind"):
        return None
    env = dict(os.environ, PYTHONHASHSEED="0")

    def count(variant, case, calls):
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             os.path.abspath(__file__), "--_count", variant, case, str(calls)],
            capture_output=True, text=True, env=env, timeout=900)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(proc.stderr[-2000:])
        return int(found.group(1))

    rows = []
    for case, label, calls in (("20 URLs", "http.client, the client's 20 usual URLs", n),
                               ("unique", "http.client, every URL new", n),
                               ("botocore", "botocore get_item, loopback stub", n // 10)):
        per = {v: (count(v, case, calls) - count(v, case, 0)) / calls
               for v in ("bare", "patched, no trace", "traced")}
        rows.append({"case": label, **per})
        print(f"  counted {label}", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--_count":
        _count_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for a smoke run")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--no-moto", action="store_true", help="skip the moto case")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions per in-memory call with callgrind (minutes)")
    args = p.parse_args(argv)
    rounds = 5 if args.quick else 21
    scale = 0.2 if args.quick else 1.0

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    import http.client

    import boto3

    tracer = install_tracer()
    procs = []
    rows = []
    try:
        responder, port = start_responder(ITEM)
        procs.append(responder)

        canned = http.client.HTTPConnection("127.0.0.1", 8080)
        canned.sock = CannedSocket()
        paths = ["/items/%d?page=2" % i for i in range(20)]  # a client's usual URLs
        turn = itertools.count()

        def in_memory():
            canned.request("GET", paths[next(turn) % 20])
            canned.getresponse().read()

        def in_memory_unique():
            canned.request("GET", "/items/%d?page=2" % next(turn))
            canned.getresponse().read()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def keep_alive():
            conn.request("GET", paths[next(turn) % 20])
            conn.getresponse().read()

        def new_connection():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", paths[next(turn) % 20])
            c.getresponse().read()
            c.close()

        stub = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")

        def botocore_stub():
            stub.get_item(TableName="orders", Key={"id": {"S": "1"}})

        cases = [
            ("http.client, in-memory socket", in_memory, int(4000 * scale)),
            ("http.client, in-memory, every URL new", in_memory_unique, int(4000 * scale)),
            ("http.client keep-alive", keep_alive, int(2000 * scale)),
            ("http.client new connection", new_connection, int(500 * scale)),
            ("botocore -> loopback stub", botocore_stub, int(300 * scale)),
        ]
        if not args.no_moto:
            moto, moto_port = start_moto()
            procs.append(moto)
            ddb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{moto_port}")
            ddb.create_table(
                TableName="orders", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            ddb.put_item(TableName="orders", Item={"id": {"S": "1"}})

            def botocore_moto():
                ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})

            cases.append(("botocore -> moto", botocore_moto, int(100 * scale)))
        for name, call, n in cases:
            n = max(PER_SEGMENT, n - n % PER_SEGMENT)
            rows.append(measure(name, call, n, rounds, tracer))
            print(f"  measured {name}", file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    head = ("case", "clock", "bare µs", "patched, no trace µs", "overhead µs", "traced µs",
            "overhead µs", "ratio traced/bare")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        untraced, traced = r["patched, no trace"], r["traced"]
        for clock in ("wall", "cpu"):
            lines.append("| %s | %s | %.1f | %.1f | %+.2f | %.1f | %+.2f | %.3f |" % (
                r["case"], "wall" if clock == "wall" else "thread CPU",
                r["bare"][clock + "_us"], untraced[clock + "_us"],
                untraced[clock + "_overhead_us"], traced[clock + "_us"],
                traced[clock + "_overhead_us"], traced[clock + "_ratio"]))
    print(f"Outbound HTTP and botocore, per call: medians of {rounds} interleaved rounds, "
          f"overhead = median of per-round differences against bare; wall clock and the "
          f"calling thread's CPU time (less sensitive to other load on the machine). "
          f"Python {sys.version.split()[0]}{', --quick' if args.quick else ''}.\n")
    print("\n".join(lines))
    counted = instructions() if args.instructions else None
    if counted:
        print("\nInstructions per call in this process (callgrind; deterministic, so unaffected "
              "by other load; http.client on the in-memory socket):\n")
        print("| call | bare | patched, no trace | overhead | traced | overhead | ratio |")
        print("|---|---|---|---|---|---|---|")
        for r in counted:
            b, u, t = r["bare"], r["patched, no trace"], r["traced"]
            print(f"| {r['case']} | {b:,.0f} | {u:,.0f} | {u - b:+,.0f} | {t:,.0f} | "
                  f"{t - b:+,.0f} | {t / b:.3f} |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"rounds": rounds, "quick": args.quick, "rows": rows,
                       "instructions": counted}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
