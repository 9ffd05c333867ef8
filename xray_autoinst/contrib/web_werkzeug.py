"""werkzeug's development server (``flask run``, ``app.run()``, ``run_simple``): wrap the
application ``BaseWSGIServer`` is built with."""

from ._server import init_app_patchers


def get_version():
    from importlib import metadata

    return metadata.version("werkzeug")


patch, unpatch = init_app_patchers("werkzeug.serving", "BaseWSGIServer", 2, "app")
