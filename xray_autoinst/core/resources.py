"""Where the service runs: ``origin`` and the ``aws.*`` blocks X-Ray's map and resources view
use, plus the segment's ``service`` block.

Detection runs once, in a background thread started with the tracer, never on a request's
path; segments sent before it finished simply lack its blocks. Each platform is asked only when
its own evidence is there, so a laptop or a CI machine sends nothing anywhere:

- Elastic Beanstalk: ``/var/elasticbeanstalk/xray/environment.conf`` exists.
- EKS: running in a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` and the pod's service-account
  token); the cluster name from the ``amazon-cloudwatch/cluster-info`` config map when the pod
  may read it, the pod's name, its container id.
- ECS: ``ECS_CONTAINER_METADATA_URI_V4`` is set (the task metadata endpoint).
- EC2: the machine's DMI data says Amazon EC2; then IMDSv2 (a token, then the instance identity
  document; IMDSv1 when the token is refused), with timeouts of a few hundred milliseconds.

``origin`` is the most specific: Beanstalk > EKS > ECS > EC2.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading

TIMEOUT = 0.3  # seconds, per metadata request
ORIGINS = (
    ("elastic_beanstalk", "AWS::ElasticBeanstalk::Environment"),
    ("eks", "AWS::EKS::Container"),
    ("ecs", "AWS::ECS::Container"),
    ("ec2", "AWS::EC2::Instance"),
)
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")

_lock = threading.Lock()
_state = {"thread": None, "done": False, "detected": {}, "pid": None}


def _path(cfg, path):
    return os.path.join(cfg.resource_root, path.lstrip("/"))


def _read(cfg, path, limit=65536):
    try:
        with open(_path(cfg, path), encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return None


def _http(url, method="GET", headers=None, timeout=TIMEOUT, context=None):
    """The body of a 200 answer, else None (never raises)."""
    import urllib.request

    try:
        req = urllib.request.Request(url, method=method, headers=headers or {})
        # (from the detection thread, flagged as the agent's own: never recorded)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(req, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            return resp.read(65536).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - no such service here, or it hung
        return None


def _json(text):
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _strings(mapping):
    return {k: v if isinstance(v, int) else str(v)[:250] for k, v in mapping.items()
            if isinstance(v, (str, int)) and not isinstance(v, bool) and v != ""}


def beanstalk(cfg):
    conf = _json(_read(cfg, "/var/elasticbeanstalk/xray/environment.conf"))
    if not conf:
        return None
    deployment = conf.get("deployment_id")
    if isinstance(deployment, str) and deployment.isdigit():
        deployment = int(deployment)  # a number in X-Ray's schema
    return _strings({"environment_name": conf.get("environment_name"),
                     "version_label": conf.get("version_label"),
                     "deployment_id": deployment}) or None


def container_id(cfg):
    for path in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        text = _read(cfg, path, 1 << 20)
        if text:
            match = _CONTAINER_ID.search(text)
            if match:
                return match.group(0)
    return None


def eks(cfg):
    token = _read(cfg, "/var/run/secrets/kubernetes.io/serviceaccount/token")
    if not cfg.k8s_host or not token:
        return None
    import socket

    out = {"pod": socket.gethostname()}
    cid = container_id(cfg)
    if cid:
        out["container_id"] = cid
    base = cfg.k8s_api or f"https://{cfg.k8s_host}"
    context = None
    if base.startswith("https:"):
        import ssl

        try:
            context = ssl.create_default_context(
                cafile=_path(cfg, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"))
        except (OSError, ssl.SSLError):
            context = None
    body = _json(_http(base + "/api/v1/namespaces/amazon-cloudwatch/configmaps/cluster-info",
                       headers={"Authorization": "Bearer " + token.strip()}, timeout=0.5,
                       context=context))
    name = ((body or {}).get("data") or {}).get("cluster.name")
    if isinstance(name, str) and name:
        out["cluster_name"] = name[:250]
    return out


def ecs(cfg):
    uri = cfg.ecs_metadata_uri
    if not uri:
        return None
    uri = uri.rstrip("/")
    container = _json(_http(uri)) or {}
    task = _json(_http(uri + "/task")) or {}
    out = _strings({
        "container": container.get("Name"),
        "container_id": container.get("DockerId"),
        "container_arn": container.get("ContainerARN"),
        "task_arn": task.get("TaskARN"),
        "task_family": task.get("Family"),
        "cluster_arn": task.get("Cluster"),
        "launch_type": (task.get("LaunchType") or "").lower() or None,
        "availability_zone": task.get("AvailabilityZone"),
    })
    if not out:
        import socket

        out = {"container": socket.gethostname()}
    return out


def on_ec2(cfg) -> bool:
    vendor = (_read(cfg, "/sys/devices/virtual/dmi/id/sys_vendor", 256) or "").strip()
    if vendor == "Amazon EC2":
        return True
    tag = (_read(cfg, "/sys/devices/virtual/dmi/id/board_asset_tag", 256) or "").strip()
    if tag.startswith("i-"):
        return True
    uuid = (_read(cfg, "/sys/hypervisor/uuid", 256) or "").strip().lower()
    return uuid.startswith("ec2")


def ec2(cfg):
    if not on_ec2(cfg):
        return None
    base = cfg.imds_endpoint.rstrip("/")
    token = _http(base + "/latest/api/token", method="PUT",
                  headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    headers = {"X-aws-ec2-metadata-token": token.strip()} if token else {}
    doc = _json(_http(base + "/latest/dynamic/instance-identity/document", headers=headers))
    if not doc:
        return None
    return _strings({
        "instance_id": doc.get("instanceId"),
        "availability_zone": doc.get("availabilityZone"),
        "instance_size": doc.get("instanceType"),
        "ami_id": doc.get("imageId"),
    }) or None


DETECTORS = (("elastic_beanstalk", beanstalk), ("eks", eks), ("ecs", ecs), ("ec2", ec2))


def _evidence(cfg) -> bool:
    """Whether any platform could be detected here (cheap checks: variables and files)."""
    return bool(
        os.path.exists(_path(cfg, "/var/elasticbeanstalk/xray/environment.conf"))
        or (cfg.k8s_host and os.path.exists(
            _path(cfg, "/var/run/secrets/kubernetes.io/serviceaccount/token")))
        or cfg.ecs_metadata_uri
        or on_ec2(cfg))


def detect(cfg) -> dict:
    """Every platform whose evidence is there: ``{"ec2": {...}, "ecs": {...}, ...}``."""
    found = {}
    for name, detector in DETECTORS:
        try:
            block = detector(cfg)
        except Exception:  # noqa: BLE001 - detection never fails the agent
            block = None
        if block:
            found[name] = block
    return found


def origin(detected) -> str | None:
    for name, value in ORIGINS:
        if name in detected:
            return value
    return None


def service_block(cfg) -> dict:
    impl = sys.implementation.name
    out = {"runtime": {"cpython": "CPython", "pypy": "PyPy"}.get(impl, impl),
           "runtime_version": "%d.%d.%d" % sys.version_info[:3]}
    if cfg.service_version:
        out["version"] = cfg.service_version
    return out


def log_groups(cfg) -> list:
    out = []
    for group in cfg.log_groups:
        if group.startswith("arn:"):
            name = group.split(":log-group:", 1)[-1].split(":", 1)[0]
            out.append({"log_group": name, "arn": group})
        else:
            out.append({"log_group": group})
    return out


def apply(cfg, detected) -> None:
    """Make the encoder put these blocks on every segment from now on."""
    from . import encoder

    aws = dict(detected)
    groups = log_groups(cfg)
    if groups:
        aws["cloudwatch_logs"] = groups
    encoder.set_segment_context(origin(detected), service_block(cfg), aws)


def _run(cfg):
    try:
        detected = detect(cfg)
        with _lock:
            _state["detected"] = detected
            _state["done"] = True
        apply(cfg, detected)
    except Exception:  # noqa: BLE001
        from .. import log as _log

        _log.get().debug("resource detection failed", exc_info=True)


def start(cfg) -> None:
    """Set the service block now; detect the platform in the background (once per process)."""
    apply(cfg, _state["detected"])
    if not cfg.resource_detection or cfg.lambda_function_name:
        return  # (in Lambda, Lambda records the function's segment and where it runs)
    if not _evidence(cfg):  # nothing to ask anyone: no thread at all (laptops, CI)
        with _lock:
            _state["done"] = True
        return
    # the modules the detection uses, imported here rather than in its thread: a pre-fork
    # server (uWSGI's C fork) must never fork while another thread holds the import lock
    import json  # noqa: F401
    import socket  # noqa: F401
    import ssl  # noqa: F401
    import urllib.request  # noqa: F401

    with _lock:
        if _state["done"] or (_state["thread"] is not None and _state["pid"] == os.getpid()):
            return
        thread = threading.Thread(target=_run, args=(cfg,), name="xray-autoinst-resources",
                                  daemon=True)
        thread._xray_autoinst_internal = True  # its requests are the agent's own, never traced
        _state["thread"] = thread
        _state["pid"] = os.getpid()
    thread.start()


def after_fork(cfg) -> None:
    """In a forked child: the parent's detection thread is gone. Never start a thread from a
    fork hook (under uWSGI's C fork that can hang the worker): if detection had not finished,
    it starts when this process's sender thread does, at its first document."""
    global _lock
    _lock = threading.Lock()  # it may have been held by the parent's thread at the fork
    _state["thread"] = None
    if not _state["done"] and cfg.enabled:
        _state["pending"] = cfg


def start_pending() -> None:
    """Called when a process's sender thread starts: detection deferred by a fork, if any."""
    cfg = _state.pop("pending", None)
    if cfg is not None:
        start(cfg)


def detected() -> dict:
    return dict(_state["detected"])

