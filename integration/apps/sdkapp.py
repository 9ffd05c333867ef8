"""A Flask application instrumented by hand with aws-xray-sdk, as many services already are:
``patch_all()``, the SDK's Flask middleware, ``capture``, ``in_subsegment``, annotations and
metadata. Under ``xray-run`` its recorder records into the agent's trace.

``OUTBOUND_PORT``: a loopback HTTP server for /fetch (GET) and an AWS-shaped endpoint for /aws
(POST).
"""

import os
import sqlite3

import boto3
import requests
from aws_xray_sdk.core import patch_all, xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import Flask

# the SDK's own choices (its local rules: sample every request); the SDK sends to
# AWS_XRAY_DAEMON_ADDRESS, the agent's daemon too
xray_recorder.configure(
    service="sdk-app",
    sampling_rules={"version": 2, "rules": [], "default": {"fixed_target": 1, "rate": 1.0}},
)
patch_all()

app = Flask(__name__)
XRayMiddleware(app, xray_recorder)


@xray_recorder.capture("work")
def work(n):
    xray_recorder.put_annotation("work_n", n)  # on the "work" subsegment
    return sum(range(n))


@app.route("/warmup")
def warmup():
    return "ok"


@app.route("/order/<int:n>")
def order(n):
    xray_recorder.put_annotation("route", "order")  # on the request's segment
    with xray_recorder.in_subsegment("block") as s:
        s.put_annotation("order_id", n)
        xray_recorder.put_metadata("request", {"n": n}, "app")  # on "block"
        total = work(n)
        conn = sqlite3.connect(":memory:")
        conn.execute("SELECT ?", (n,)).fetchall()
        conn.close()
    return str(total)


@app.route("/fetch")
def fetch():
    resp = requests.get("http://127.0.0.1:%s/downstream" % os.environ["OUTBOUND_PORT"],
                        timeout=5)
    return resp.text


@app.route("/aws")
def aws():
    client = boto3.client(
        "dynamodb", endpoint_url="http://127.0.0.1:%s" % os.environ["OUTBOUND_PORT"],
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    client.list_tables()
    return "listed"


@app.route("/boom")
def boom():
    with xray_recorder.in_subsegment("failing-step"):
        raise ValueError("sdk app failed")
