"""A small Flask application (no tracing code)."""

import sys

from flask import Flask, abort

app = Flask(__name__)


@app.route("/")
@app.route("/<name>")
def index(name=""):
    return "hello from flask"


@app.route("/boom")
def boom():
    raise ValueError("flask view failed")


@app.route("/missing")
def missing():
    abort(404)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]))
