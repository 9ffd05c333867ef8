# xray-autoinst start-up hook: put on PYTHONPATH by `xray-run`. Standard library only, and it
# must at least parse on any Python 3. It does nothing (silently) in an interpreter that is not
# the installation xray-run prepared, or when tracing is disabled; otherwise it installs the
# agent's post-import hooks. Then it runs the user's own sitecustomize, if one exists.
import os
import sys


def _xray_autoinst_meant_for_us():
    """Is this the Python installation the launcher prepared?"""
    expect = os.environ.get("XRAY_AUTOINST_EXPECT")
    if expect is None:
        return False
    if expect:  # the Python launcher recorded sys.prefix and version
        here = "%s|%d.%d" % (sys.prefix, sys.version_info[0], sys.version_info[1])
        return expect == here
    # the shell launcher: act where `import xray_autoinst` finds this very package, i.e. where
    # the site-packages holding it is on sys.path
    site_dir = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             os.pardir, os.pardir))
    for entry in sys.path:
        if entry and os.path.realpath(entry) == site_dir:
            return True
    return False


def _xray_autoinst_start():
    if not _xray_autoinst_meant_for_us():
        return
    for var in ("XRAY_ENABLED", "AWS_XRAY_SDK_ENABLED"):
        if os.environ.get(var, "").strip().lower() in ("false", "0", "no", "off"):
            if var == "AWS_XRAY_SDK_ENABLED" and os.environ.get("XRAY_ENABLED", "").strip():
                continue
            return
    try:
        from xray_autoinst import bootstrap

        bootstrap.start()
    except Exception:  # never break the interpreter's start
        if os.environ.get("XRAY_AUTOINST_RAISE"):
            raise
        try:
            import traceback

            sys.stderr.write("xray-autoinst: start-up failed; tracing is off:\n")
            traceback.print_exc()
        except Exception:
            pass


def _xray_autoinst_chain():
    """Import the next ``sitecustomize`` on sys.path, as if this one were not there."""
    here = os.path.dirname(os.path.abspath(__file__))
    mod = sys.modules.get("sitecustomize")
    try:
        # the import system's own modules, already loaded (importlib.machinery would import
        # warnings and importlib: a millisecond on every start)
        external = sys.modules["_frozen_importlib_external"]
        bootstrap = sys.modules["_frozen_importlib"]
        path = [p for p in sys.path if os.path.abspath(p or ".") != here]
        spec = external.PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        module = bootstrap.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
    except Exception:
        if mod is not None:
            sys.modules["sitecustomize"] = mod
        if os.environ.get("XRAY_AUTOINST_RAISE"):
            raise
        import traceback

        sys.stderr.write("xray-autoinst: the application's own sitecustomize failed:\n")
        traceback.print_exc()


try:
    _xray_autoinst_start()
finally:
    _xray_autoinst_chain()
