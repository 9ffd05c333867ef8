"""``xray-autoinst lambda-layer -o layer.zip [--python 3.12] [--arch x86_64|arm64] [--with REQ]``

Builds an AWS Lambda layer. Lambda unpacks a layer into ``/opt``::

    /opt/xray-run                                  the exec wrapper (AWS_LAMBDA_EXEC_WRAPPER)
    /opt/python/xray_autoinst/...                  this package (pure Python), byte-compiled
    /opt/python/xray_autoinst/_startup/sitecustomize.py   the start-up hook
    /opt/python/<REQ>...                           --with requirements, built with pip for the
                                                   function's Python and architecture

The agent is copied from this very installation (what runs here is what ships: no index, no
build step); ``--with`` requirements go through ``pip install --target`` with ``--platform``,
``--python-version``, ``--implementation cp`` and ``--only-binary=:all:``, so that compiled
packages match the function, not the build machine. Nothing in the layer refers to a path of
the build machine. Byte-code is compiled with unchecked hashes (``/opt`` is read-only in
Lambda and zip timestamps are not kept reliably: timestamp-checked ``.pyc`` files would be
recompiled at every cold start) when an interpreter of the target version is at hand.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile

USAGE = """usage: xray-autoinst lambda-layer -o LAYER.zip [--python X.Y] [--arch x86_64|arm64]
                                  [--with REQUIREMENT]... [--no-compile]

Builds an AWS Lambda layer holding xray-autoinst and its exec wrapper. Add the layer to the
function and set AWS_LAMBDA_EXEC_WRAPPER=/opt/xray-run (active tracing on).

  -o, --output PATH   the zip to write
  --python X.Y        the function's Python version (default: this interpreter's)
  --arch ARCH         x86_64 (default) or arm64: the platform of --with packages
  --with REQ          also install REQ (pip requirement) into the layer; repeatable
  --no-compile        ship sources only (Lambda then compiles them at every cold start)
"""

PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
MIN_PYTHON = (3, 10)
LAYER_PACKAGES = "/opt/python"  # where Lambda puts the layer's python/ directory

# The exec wrapper at the layer's root. Lambda runs it with the runtime's start command as
# arguments; it must end by exec'ing them. Whatever is wrong with the agent (layer incomplete,
# files missing, XRAY_ENABLED=false) it execs the runtime unchanged: tracing never stops a
# function from starting. Paths are derived from where the script itself is (/opt).
WRAPPER = r"""#!/bin/sh
# xray-autoinst exec wrapper for AWS Lambda (AWS_LAMBDA_EXEC_WRAPPER=/opt/xray-run).
# Adds the agent's start-up hook to PYTHONPATH, then execs the runtime's own start command
# unchanged. If the agent's files are not where they should be, it changes nothing at all.
layer=${0%/*}
[ "$layer" = "$0" ] && layer=.
pkgs=$layer/python
boot=$pkgs/xray_autoinst/_startup
if [ -f "$boot/sitecustomize.py" ] && [ -f "$pkgs/xray_autoinst/bootstrap.py" ]; then
    case ":${PYTHONPATH-}:" in
        *":$boot:"*) ;;
        *) PYTHONPATH=$boot${PYTHONPATH:+:$PYTHONPATH} ;;
    esac
    # the hook acts where the layer's packages are importable: make sure they are
    case ":$PYTHONPATH:" in
        *":$pkgs:"*) ;;
        *) PYTHONPATH=$PYTHONPATH:$pkgs ;;
    esac
    XRAY_AUTOINST_EXPECT=
    export PYTHONPATH XRAY_AUTOINST_EXPECT
else
    echo "xray-autoinst: the layer is incomplete ($boot); starting the function untraced" >&2
fi
[ $# -gt 0 ] || exit 0
exec "$@"
"""


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def _copy_agent(dest):
    """This installation's xray_autoinst package (sources only) into ``dest``."""
    src = _package_dir()
    if not os.path.isfile(os.path.join(src, "_startup", "sitecustomize.py")):
        # a source checkout (editable install): the hook lives in <repo>/sitecustomize
        boot = os.path.join(os.path.dirname(src), "sitecustomize", "sitecustomize.py")
        if not os.path.isfile(boot):
            raise RuntimeError("the start-up hook (_startup/sitecustomize.py) is not installed")
    else:
        boot = None
    target = os.path.join(dest, "xray_autoinst")
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if boot is not None:
        os.makedirs(os.path.join(target, "_startup"), exist_ok=True)
        shutil.copy2(boot, os.path.join(target, "_startup", "sitecustomize.py"))


def _pip_install(dest, requirements, python, arch):
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--target", dest, "--implementation", "cp",
           "--python-version", python, "--only-binary=:all:"]
    for platform in PLATFORMS[arch]:
        cmd += ["--platform", platform]
    cmd += list(requirements)
    subprocess.run(cmd, check=True)


def _find_python(version):
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    return shutil.which("python" + version)


def _compile(dest, python):
    """Byte-compile ``dest`` for ``python`` (unchecked-hash .pyc). Returns True if done."""
    exe = _find_python(python)
    if exe is None:
        return False
    # -s/-p: the file names recorded in the byte-code are those under /opt, not the build dir
    subprocess.run([exe, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", "-s", dest, "-p", LAYER_PACKAGES, dest],
                   check=True, stdout=subprocess.DEVNULL)
    return True


def _zip(root, output):
    tmp = output + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                arc = os.path.relpath(path, root)
                info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
                mode = os.stat(path).st_mode
                info.external_attr = ((0o755 if mode & stat.S_IXUSR else 0o644)
                                      | stat.S_IFREG) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as f:
                    zf.writestr(info, f.read())
    os.replace(tmp, output)


def build(output, python=None, arch="x86_64", requirements=(), compile=True, log=None):
    """Write the layer zip to ``output``. Returns a list of notes (what was not done)."""
    python = python or "%d.%d" % sys.version_info[:2]
    try:
        major, minor = (int(p) for p in python.split("."))
    except ValueError:
        raise ValueError("--python expects X.Y, e.g. 3.12, not %r" % python)
    if (major, minor) < MIN_PYTHON:
        raise ValueError("xray-autoinst needs Python %d.%d or later" % MIN_PYTHON)
    if arch not in PLATFORMS:
        raise ValueError("--arch expects x86_64 or arm64, not %r" % arch)
    notes = []
    with tempfile.TemporaryDirectory(prefix="xray-layer-") as root:
        pkgs = os.path.join(root, "python")
        os.makedirs(pkgs)
        if requirements:
            _pip_install(pkgs, requirements, python, arch)
        _copy_agent(pkgs)
        wrapper = os.path.join(root, "xray-run")
        with open(wrapper, "w", newline="\n") as f:
            f.write(WRAPPER)
        os.chmod(wrapper, 0o755)
        if compile and not _compile(pkgs, python):
            notes.append("no python%s here: the layer ships sources only (Lambda compiles "
                         "them at each cold start)" % python)
        _zip(root, os.path.abspath(output))
    return notes


def main(argv):
    args = list(argv)
    output = python = None
    arch = "x86_64"
    requirements = []
    compile = True
    try:
        while args:
            opt = args.pop(0)
            if opt in ("-h", "--help"):
                sys.stdout.write(USAGE)
                return 0
            if opt in ("-o", "--output"):
                output = args.pop(0)
            elif opt == "--python":
                python = args.pop(0)
            elif opt == "--arch":
                arch = args.pop(0)
            elif opt == "--with":
                requirements.append(args.pop(0))
            elif opt == "--no-compile":
                compile = False
            else:
                sys.stderr.write("lambda-layer: unknown option %s\n%s" % (opt, USAGE))
                return 2
    except IndexError:
        sys.stderr.write("lambda-layer: %s needs a value\n%s" % (opt, USAGE))
        return 2
    if not output:
        sys.stderr.write("lambda-layer: -o LAYER.zip is required\n%s" % USAGE)
        return 2
    try:
        notes = build(output, python, arch, requirements, compile)
    except (ValueError, RuntimeError) as exc:
        sys.stderr.write("lambda-layer: %s\n" % exc)
        return 2
    except subprocess.CalledProcessError as exc:
        what = "pip install" if "pip" in exc.cmd else "byte-compiling"
        sys.stderr.write("lambda-layer: %s failed (exit %s): %s\n"
                         % (what, exc.returncode, " ".join(exc.cmd)))
        return 1
    for note in notes:
        sys.stderr.write("lambda-layer: note: %s\n" % note)
    sys.stderr.write("lambda-layer: wrote %s; add it to the function and set "
                     "AWS_LAMBDA_EXEC_WRAPPER=/opt/xray-run\n" % output)
    return 0
