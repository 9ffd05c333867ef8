"""The store writer's pipe protocol: length-prefixed pickled batches in, counter lines out."""

import io
import json
import pickle
import struct

from xray_autoinst.daemon.protocol import decode, encode
from xray_autoinst.daemon.store import Store
from xray_autoinst.daemon.writer import WriterProcess, serve

T0 = 1_700_000_000.0


def row(n):
    doc = {"name": "w", "id": f"{n:016x}", "trace_id": f"1-6553f100-{n:024x}",
           "start_time": T0 + n, "end_time": T0 + n + 1}
    return decode(encode(doc), T0)[1]


def frame(rows):
    data = pickle.dumps(rows)
    return struct.pack(">I", len(data)) + data


def test_serve_writes_batches_and_reports(tmp_path):
    path = str(tmp_path / "t.db")
    frames = tmp_path / "frames"
    frames.write_bytes(frame([row(1), row(2)]) + frame([row(3)]) + struct.pack(">I", 0)
                       + frame([row(4)]))  # nothing after the stop frame is read
    out = io.BytesIO()
    with open(frames, "rb", buffering=0) as inp:
        assert serve(path, 2, 1 << 30, inp, out) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0]["ready"] is True
    final = lines[-1]
    assert final["final"] is True and final["stored"] == 3 and final["store_errors"] == 0
    assert final["traces"] == 2 and final["evicted"] == 1  # --max-traces 2
    r = Store.open_reader(path)
    assert sorted(r.trace_ids()) == [row(2)[0], row(3)[0]]
    r.close_reader()


def test_serve_reports_a_store_it_cannot_open(tmp_path):
    out = io.BytesIO()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert serve(str(blocker / "t.db"), 10, 1 << 30, io.BytesIO(), out) == 1
    assert "cannot open the store" in json.loads(out.getvalue())["error"]


def test_writer_process_round_trip(tmp_path):
    path = str(tmp_path / "t.db")
    w = WriterProcess(path, max_traces=100, max_bytes=1 << 30)
    assert w.send([row(1), row(2)]) and w.send([row(3)])
    w.close()
    assert w.proc.returncode == 0
    assert w.counters["stored"] == 3 and w.pending() == 0
    assert w.send([row(4)]) is False  # closed
