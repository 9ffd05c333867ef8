"""Emission throughput (runner side): a UDP sink process and ``emission_worker.py`` in this
agent's environment, pinned to different CPUs when ``taskset`` exists."""

from __future__ import annotations

from benchlib import run_worker, worker_env
from sink import Sink, pin


def run(venv, windows: int, window_s: float, log=print) -> dict:
    log(f"  emission: {windows} windows of {window_s:g} s per figure")
    with Sink(cpu=1) as sink:
        res = run_worker(venv.python, "emission_worker.py",
                         {"sink": sink.address, "windows": windows, "window_s": window_s},
                         env=worker_env(), prefix=pin(0))
    res["sink"] = sink.counts
    res["pinned"] = bool(pin(0))
    return res
