"""waitress: wrap the application each server is built with (``serve``, ``create_server`` and
``waitress-serve`` all construct ``BaseWSGIServer``)."""

from ._server import init_app_patchers


def get_version():
    from importlib import metadata

    return metadata.version("waitress")


patch, unpatch = init_app_patchers("waitress.server", "BaseWSGIServer", 0, "application")
