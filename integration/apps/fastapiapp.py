"""A FastAPI application used by the ASGI end-to-end tests (no tracing code)."""

import asyncio
import os
import sqlite3
import urllib.request
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

MARKERS = os.environ.get("APP_MARKERS")  # a directory: lifespan start-up/shutdown write here
DOWNSTREAM = os.environ.get("APP_DOWNSTREAM")  # http://127.0.0.1:PORT of a loopback server


def _mark(name):
    if MARKERS:
        with open(os.path.join(MARKERS, name), "w") as f:
            f.write(str(os.getpid()))


@asynccontextmanager
async def lifespan(app):
    _mark("startup")
    yield
    _mark("shutdown")


def create_app():
    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def index():
        return PlainTextResponse("hello")

    @app.get("/warmup")
    async def warmup():
        return PlainTextResponse("ok")

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item": item_id}

    @app.get("/missing")
    async def missing():
        raise HTTPException(status_code=404)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("boom from the app")

    @app.get("/fail")
    async def fail():
        return JSONResponse({"error": "unavailable"}, status_code=503)

    @app.get("/pid")
    async def pid():
        await asyncio.sleep(0.05)
        return PlainTextResponse(str(os.getpid()))

    @app.get("/stream")
    async def stream():
        async def chunks():
            for i in range(3):
                await asyncio.sleep(0.2)
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/sync-sql")
    def sync_sql():  # a sync endpoint: FastAPI runs it in its thread pool
        conn = sqlite3.connect(":memory:")
        conn.execute("create table t (x integer)")
        conn.execute("insert into t values (42)")
        (value,) = conn.execute("select x from t where x = 42").fetchone()
        conn.close()
        return {"value": value}

    @app.get("/pg/{n}")
    def pg(n: int):  # psycopg from a sync endpoint (the thread pool)
        import psycopg

        with psycopg.connect(os.environ["APP_PG_DSN"]) as conn:
            (value,) = conn.execute("select %s::int + 1", (n,)).fetchone()
        return {"value": value}

    @app.get("/fanout/{n}")
    async def fanout(n: int):
        # a different wait for every request, so that requests interleave on the loop
        await asyncio.sleep((n % 7) * 0.01)
        url = f"{DOWNSTREAM}/echo/{n}"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: urllib.request.urlopen(url + "/again").read())
        return PlainTextResponse(body)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text("echo " + text)
        await websocket.close()

    return app


app = create_app()
