"""Options and environment of ``xray-autoinst daemon|traces|trace|map`` (no processes)."""

import datetime
import json
import os

import pytest

from xray_autoinst.daemon import cli, local
from xray_autoinst.daemon.protocol import decode, encode
from xray_autoinst.daemon.store import Store

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "text, ago",
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("90", 90),
     ("1.5h", 5400), (" 5M ", 300)],
)
def test_since_durations(text, ago):
    assert cli.parse_since(text, now=NOW) == NOW - ago


def test_since_iso_times():
    utc = cli.parse_since("2023-11-14T22:13:20Z", now=NOW)
    assert utc == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc
                                    ).timestamp()
    assert cli.parse_since("2023-11-14T22:13:20+01:00") == utc - 3600
    naive = cli.parse_since("2023-11-14 22:13")  # local time
    assert naive == datetime.datetime(2023, 11, 14, 22, 13).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-5m", "2023-13-01"])
def test_since_rejects(text):
    with pytest.raises(ValueError, match="--since"):
        cli.parse_since(text)


@pytest.mark.parametrize(
    "environ, path",
    [
        ({"HOME": "/home/u"}, "/home/u/.local/share/xray-autoinst/traces.db"),
        ({"HOME": "/home/u", "XDG_DATA_HOME": "/data"}, "/data/xray-autoinst/traces.db"),
        ({"HOME": "/home/u", "XDG_DATA_HOME": "relative"},
         "/home/u/.local/share/xray-autoinst/traces.db"),
        ({"HOME": "/home/u", "XDG_DATA_HOME": ""},
         "/home/u/.local/share/xray-autoinst/traces.db"),
    ],
)
def test_default_store_path(environ, path):
    assert local.default_store_path(environ) == path


def settings(argv, **environ):
    environ.setdefault("HOME", "/home/u")
    return cli.daemon_settings(cli.daemon_parser().parse_args(argv), environ)


def test_daemon_defaults():
    s = settings([])
    assert s.udp == s.tcp == ("127.0.0.1", 2000)
    assert s.store == "/home/u/.local/share/xray-autoinst/traces.db"
    assert (s.max_traces, s.max_bytes) == (10_000, 256 * 1024 * 1024)
    assert s.forward is False and s.endpoint_url is None and s.region is None
    assert s.forward_buffer_bytes == 16 * 1024 * 1024
    assert (s.summary_interval, s.drain_timeout) == (60.0, 10.0)
    assert s.sampling_rules is None


def test_daemon_address_from_the_environment_and_options():
    s = settings([], AWS_XRAY_DAEMON_ADDRESS="udp:127.0.0.1:3000 tcp:127.0.0.1:3001")
    assert (s.udp, s.tcp) == (("127.0.0.1", 3000), ("127.0.0.1", 3001))
    s = settings(["--listen", "127.0.0.1:4000"], AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:3000")
    assert s.udp == s.tcp == ("127.0.0.1", 4000)
    with pytest.raises(ValueError, match="AWS_XRAY_DAEMON_ADDRESS"):
        settings([], AWS_XRAY_DAEMON_ADDRESS="nonsense:port")


def test_forward_options():
    s = settings(["--forward"], AWS_ENDPOINT_URL_XRAY="http://127.0.0.1:4566")
    assert s.forward and s.endpoint_url == "http://127.0.0.1:4566"
    s = settings(["--forward", "--endpoint-url", "http://x:1", "--region", "eu-west-1"],
                 AWS_ENDPOINT_URL_XRAY="http://127.0.0.1:4566")
    assert (s.endpoint_url, s.region) == ("http://x:1", "eu-west-1")
    assert settings([], AWS_ENDPOINT_URL_XRAY="http://y:1").endpoint_url is None
    with pytest.raises(ValueError, match="--forward"):
        settings(["--endpoint-url", "http://x:1"])
    with pytest.raises(ValueError, match="--forward"):
        settings(["--region", "us-east-1"])


def test_store_options_and_rules():
    s = settings(["--store", "~/t.db", "--max-traces", "5", "--max-store-mb", "2",
                  "--forward-buffer-mb", "1"], XRAY_SAMPLING_RULES=' {"version": 2} ')
    assert s.store == os.path.expanduser("~/t.db")
    assert (s.max_traces, s.max_bytes, s.forward_buffer_bytes) == (5, 2 << 20, 1 << 20)
    assert s.sampling_rules == '{"version": 2}'
    assert settings(["--no-store"]).store is None


@pytest.mark.parametrize(
    "argv", [["--max-traces", "0"], ["--max-traces", "x"], ["--summary-interval", "0"],
             ["--detach", "--stop"], ["--bogus"]],
)
def test_daemon_usage_errors(argv, capsys):
    assert cli.main_daemon(argv) == 2
    assert "usage: xray-autoinst daemon" in capsys.readouterr().err


def test_daemon_bad_address_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "udp:x")
    assert cli.main_daemon([]) == 2
    assert "AWS_XRAY_DAEMON_ADDRESS" in capsys.readouterr().err


T0 = 1_700_000_000.0


@pytest.fixture
def store_path(tmp_path):
    path = str(tmp_path / "traces.db")
    s = Store.open_writer(path)
    for n, (status, name) in enumerate([(200, "api"), (500, "api"), (404, "worker")]):
        trace = f"1-6553f100-{n:024x}"
        doc = {"name": name, "id": f"{n:016x}", "trace_id": trace, "start_time": T0 + n,
               "end_time": T0 + n + 0.1 * (n + 1),
               "http": {"request": {"method": "GET", "url": f"http://h/{n}"},
                        "response": {"status": status}}}
        if status == 500:
            doc["fault"] = True
        s.write([decode(encode(doc), T0)[1]])
    s.close()
    return path


def run_view(fn, argv, capsys):
    code = fn(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_traces_view(store_path, capsys):
    code, out, _ = run_view(cli.main_traces, ["--store", store_path, "--json"], capsys)
    assert code == 0
    items = json.loads(out)
    assert [i["status"] for i in items] == [404, 500, 200]
    code, out, _ = run_view(cli.main_traces, ["--store", store_path, "--json", "--status", "5xx",
                                              "--service", "api"], capsys)
    assert [i["trace_id"] for i in json.loads(out)] == ["1-6553f100-" + "0" * 23 + "1"]
    code, out, _ = run_view(cli.main_traces, ["--store", store_path, "--width", "150"], capsys)
    assert code == 0 and "GET /1" in out and "fault" in out and "\x1b[" not in out


@pytest.mark.parametrize(
    "argv", [["--status", "abc"], ["--since", "later"], ["--limit", "0"]],
)
def test_traces_usage_errors(store_path, argv, capsys):
    code, _, err = run_view(cli.main_traces, ["--store", store_path, *argv], capsys)
    assert code == 2 and "usage: xray-autoinst traces" in err


def test_views_of_a_missing_store(tmp_path, capsys):
    missing = str(tmp_path / "none.db")
    code, out, err = run_view(cli.main_traces, ["--store", missing, "--json"], capsys)
    assert (code, out) == (0, "[]\n") and "no trace store" in err
    code, out, err = run_view(cli.main_trace, ["--store", missing, "latest"], capsys)
    assert code == 1 and "no trace store" in err
    code, out, err = run_view(cli.main_map, ["--store", missing, "--json"], capsys)
    assert code == 0 and json.loads(out)["nodes"] == []


def test_trace_view(store_path, capsys):
    code, out, _ = run_view(cli.main_trace, ["--store", store_path, "latest", "--json"], capsys)
    assert code == 0
    merged = json.loads(out)
    assert merged["trace_id"].endswith("2") and merged["segments"][0]["name"] == "worker"
    code, out, err = run_view(cli.main_trace, ["--store", store_path, "1-6553f100-0"], capsys)
    assert code == 1 and "matches several traces" in err
    code, out, err = run_view(cli.main_trace, ["--store", store_path, "1-00000000"], capsys)
    assert code == 1 and "no trace" in err
    code, out, _ = run_view(cli.main_trace, ["--store", store_path, "--width", "100",
                                             "6553f100-" + "0" * 23 + "1"], capsys)
    assert code == 0 and "500 fault" in out


def test_map_view(store_path, capsys):
    code, out, _ = run_view(cli.main_map, ["--store", store_path, "--json"], capsys)
    graph = json.loads(out)
    assert code == 0 and {n["id"] for n in graph["nodes"]} == {
        "client", "service:api", "service:worker"}
    code, out, _ = run_view(cli.main_map, ["--store", store_path, "--dot"], capsys)
    assert out.startswith("digraph")
    code, _, err = run_view(cli.main_map, ["--store", store_path, "--dot", "--json"], capsys)
    assert code == 2


def test_stop_and_status_without_a_daemon(tmp_path, capsys):
    store = str(tmp_path / "t.db")
    assert cli.main_daemon(["--stop", "--store", store]) == 0
    assert "no daemon is running" in capsys.readouterr().err
    assert cli.main_daemon(["--status", "--store", store]) == 1
    # a stale pid file (no such process) is cleaned up
    with open(local.pid_file_for(store), "w") as f:
        json.dump({"pid": 2 ** 22 + 12345, "tcp": "127.0.0.1:1"}, f)
    assert cli.main_daemon(["--stop", "--store", store]) == 0
    assert not os.path.exists(local.pid_file_for(store))


def test_map_view_service_and_time_range(store_path, capsys):
    code, out, _ = run_view(cli.main_map, ["--store", store_path, "--json", "--service",
                                           "worker"], capsys)
    graph = json.loads(out)
    assert code == 0 and {n["id"] for n in graph["nodes"]} == {"client", "service:worker"}
    # traces started at T0, T0+1, T0+2: --until T0+1.5 leaves the first two
    until = datetime.datetime.fromtimestamp(T0 + 1.5).isoformat()
    code, out, _ = run_view(cli.main_map, ["--store", store_path, "--json", "--until", until],
                            capsys)
    assert json.loads(out)["traces"] == 2
    code, _, err = run_view(cli.main_map, ["--store", store_path, "--until", "soon"], capsys)
    assert code == 2 and "--until 'soon'" in err


def test_ui_usage_errors(tmp_path, capsys):
    code, _, err = run_view(cli.main_ui, ["--port", "70000"], capsys)
    assert code == 2 and "usage: xray-autoinst ui" in err
    code, _, err = run_view(cli.main_daemon, ["--ui", "--no-store"], capsys)
    assert code == 2 and "--no-store" in err
    code, _, err = run_view(cli.main_daemon, ["--ui-port", "3000"], capsys)
    assert code == 2 and "--ui-port is for --ui" in err
