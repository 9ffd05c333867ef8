"""The registry: which integrations exist, the modules each waits for, and its patcher.

Data only: a patcher module is imported when one of its target modules is imported by the
application, never before. ``distribution`` names the package whose version ``--check`` shows
(a tuple: alternatives, the first installed one is shown).

This module is imported at every interpreter start: ``Integration`` is a plain class with
``__slots__`` (``collections.namedtuple`` or ``typing.NamedTuple`` would import ``collections``,
which a bare interpreter has not loaded).
"""


class Integration:
    """One row of the registry: ``targets`` (the modules whose import runs the patcher),
    ``patcher`` (the module with ``patch()``/``unpatch()``/``get_version()``, imported then) and
    ``distribution`` (None for the standard library, a name, or a tuple of alternatives)."""

    __slots__ = ("targets", "patcher", "distribution")

    def __init__(self, targets, patcher, distribution=None):
        self.targets = targets
        self.patcher = patcher
        self.distribution = distribution

    def __repr__(self):
        return "Integration(%r, %r, %r)" % (self.targets, self.patcher, self.distribution)


# name: Integration(target modules, patcher module, distribution)
INTEGRATIONS = {
    # web servers: wrap the application each server loads
    "wsgiref": Integration(("wsgiref.simple_server",), "xray_autoinst.contrib.web_wsgiref", None),
    "gunicorn": Integration(
        ("gunicorn.app.base",), "xray_autoinst.contrib.web_gunicorn", "gunicorn",
    ),
    "waitress": Integration(("waitress.server",), "xray_autoinst.contrib.web_waitress", "waitress"),
    "werkzeug": Integration(
        ("werkzeug.serving",), "xray_autoinst.contrib.web_werkzeug", "werkzeug",
    ),
    "flask": Integration(("flask",), "xray_autoinst.contrib.web_flask", "flask"),
    # ASGI servers, and Django (its 500s' cause and its route, under WSGI and ASGI alike)
    "uvicorn": Integration(("uvicorn.config",), "xray_autoinst.contrib.web_uvicorn", "uvicorn"),
    "hypercorn": Integration(
        ("hypercorn.app_wrappers",), "xray_autoinst.contrib.web_hypercorn", "hypercorn",
    ),
    "daphne": Integration(("daphne.server",), "xray_autoinst.contrib.web_daphne", "daphne"),
    "django": Integration(
        ("django.core.handlers.base",), "xray_autoinst.contrib.web_django", "django",
    ),
    # uWSGI has no Python loader to hook: its embedded module appears, then the app is wrapped
    "uwsgi": Integration(("uwsgi",), "xray_autoinst.contrib.web_uwsgi", "uwsgi"),
    # context follows the work into threads
    "threading": Integration(("threading",), "xray_autoinst.contrib.ctx_threading", None),
    "futures": Integration(
        ("concurrent.futures.thread",), "xray_autoinst.contrib.ctx_futures", None,
    ),
    # log records carry the trace id
    "logging": Integration(("logging",), "xray_autoinst.contrib.log_logging", None),
    # outbound HTTP and AWS
    "httplib": Integration(("http.client",), "xray_autoinst.contrib.http_client", None),
    "urllib3": Integration(
        ("urllib3.connection",), "xray_autoinst.contrib.http_urllib3", "urllib3",
    ),
    "botocore": Integration(("botocore.client",), "xray_autoinst.contrib.aws_botocore", "botocore"),
    "aiobotocore": Integration(
        ("aiobotocore.client",), "xray_autoinst.contrib.aws_aiobotocore", "aiobotocore",
    ),
    "httpx": Integration(("httpx",), "xray_autoinst.contrib.http_httpx", "httpx"),
    "aiohttp": Integration(
        ("aiohttp.client_reqrep", "aiohttp.connector"), "xray_autoinst.contrib.http_aiohttp",
        "aiohttp",
    ),
    # SQS consumers through boto3 resources (the client side comes with botocore)
    "boto3_sqs": Integration(
        ("boto3.resources.response",), "xray_autoinst.contrib.aws_sqs", "boto3",
    ),
    # databases
    "sqlite3": Integration(("sqlite3",), "xray_autoinst.contrib.db_sqlite3", None),
    "psycopg": Integration(("psycopg",), "xray_autoinst.contrib.db_psycopg", "psycopg"),
    "psycopg2": Integration(
        ("psycopg2",), "xray_autoinst.contrib.db_psycopg2", ("psycopg2-binary", "psycopg2"),
    ),
    "pymysql": Integration(("pymysql.cursors",), "xray_autoinst.contrib.db_pymysql", "PyMySQL"),
    "mysqlclient": Integration(
        ("MySQLdb.connections",), "xray_autoinst.contrib.db_mysqlclient", "mysqlclient",
    ),
    "asyncpg": Integration(("asyncpg.connection",), "xray_autoinst.contrib.db_asyncpg", "asyncpg"),
    # aiosqlite's thread runs each call in the caller's context; sqlite3 records the statement
    "aiosqlite": Integration(
        ("aiosqlite.core",), "xray_autoinst.contrib.db_aiosqlite", "aiosqlite",
    ),
    # caches
    "redis": Integration(("redis.client",), "xray_autoinst.contrib.db_redis", "redis"),
    "redis_asyncio": Integration(
        ("redis.asyncio.client",), "xray_autoinst.contrib.db_redis_asyncio", "redis",
    ),
    # task queues: publishing carries the trace, each task execution is a segment
    "celery": Integration(("celery.app.base",), "xray_autoinst.contrib.task_celery", "celery"),
    # AWS Lambda: the runtime interface client calls the handler (one subsegment per invocation)
    "awslambdaric": Integration(
        ("awslambdaric.bootstrap",), "xray_autoinst.contrib.lambda_awslambdaric", "awslambdaric",
    ),
    # applications already using aws-xray-sdk: its recorder records into the agent's trace
    "aws_xray_sdk": Integration(
        ("aws_xray_sdk.core.recorder",), "xray_autoinst.contrib.sdk_aws_xray", "aws-xray-sdk",
    ),
}

# target modules created by a host program rather than imported (hooks run once they appear)
APPEARING = frozenset({"uwsgi"})

# Libraries the agent does not trace: when the application imports one, the log says so once
# (at info level) and ``--check`` lists the installed ones, so silence never means "traced".
# module -> what it is
UNTRACED = {
    "tornado.web": "tornado's web server",
    "sanic": "Sanic",
    "aiohttp.web": "aiohttp's web server",
    "grpc": "gRPC",
    "pymongo": "MongoDB (pymongo)",
    "motor": "MongoDB (motor)",
    "elasticsearch": "Elasticsearch",
    "cassandra": "Cassandra",
    "kafka": "Kafka (kafka-python)",
    "confluent_kafka": "Kafka (confluent-kafka)",
    "aiokafka": "Kafka (aiokafka)",
    "pika": "RabbitMQ (pika)",
    "aio_pika": "RabbitMQ (aio-pika)",
    "nats": "NATS",
    "paho.mqtt.client": "MQTT (paho-mqtt)",
    "pycurl": "pycurl",
    "pymemcache": "memcached (pymemcache)",
    "mysql.connector": "MySQL (mysql-connector-python)",
    "oracledb": "Oracle (oracledb)",
    "pyodbc": "ODBC (pyodbc)",
}
