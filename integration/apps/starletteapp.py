"""A plain Starlette application used by the ASGI end-to-end tests (no tracing code)."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route


async def index(request):
    return PlainTextResponse("hello from starlette")


async def user(request):
    return PlainTextResponse("user " + request.path_params["uid"])


async def boom(request):
    raise ValueError("starlette view failed")


async def missing(request):
    return PlainTextResponse("no", status_code=404)


app = Starlette(routes=[
    Route("/", index),
    Route("/warmup", index),
    Route("/users/{uid}", user),
    Route("/boom", boom),
    Route("/missing", missing),
    Mount("/api", routes=[Route("/users/{uid}", user)]),
])
