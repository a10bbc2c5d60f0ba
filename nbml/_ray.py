"""Starting a local Ray that comes up reliably on a small busy machine: what `nbml.predict_files(engine="ray")`
and `nbml.serve(engine="ray")` share. Only `ray` itself is imported, and only when called."""
from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["RAY_IMPORT_PATH", "local_ray_env", "start_local_ray", "ray_processes", "end_processes"]

# Every process of a local Ray (the dashboard head and agent, the runtime-env agent, the log monitor, each worker)
# starts with `import ray`, which imports jsonschema (Ray checks runtime_env plugins against JSON schemas), which
# imports the package of each optional format checker it finds installed. One of them, rfc3987_syntax (installed
# with JupyterLab by jupyter-events), builds a lark grammar at import: ~2.3 s of CPU of the ~3 s that `import ray`
# takes (python -X importtime). Ray gives its node fixed windows to come up: the raylet waits ~15 s for its dashboard
# agent's ports (RAY_agent_register_timeout_ms does not change that wait in Ray 2.60) and ray.init 30 s for the
# raylet (a constant in ray/_private/node.py). On 2 busy cores several such imports at once overran them, and the
# local Ray did not start. `nbml/_ray_path` holds a package of that name that raises ImportError, which jsonschema
# takes as "not installed" (Ray never checks formats, so nothing it does changes); Python puts PYTHONPATH entries
# before site-packages, so Ray's processes find it first. Those processes get the environment of the ray.init that
# starts them (ray._private.services copies os.environ for each process it starts; the raylet passes its own on to the
# agents and workers it starts), so PYTHONPATH is set around ray.init only; this process's own imports and
# sys.path are untouched.
RAY_IMPORT_PATH = Path(__file__).with_name("_ray_path")
_environ_lock = threading.Lock()


def local_ray_env() -> dict[str, str]:
    """The environment variables set for the processes of the local Ray started by `start_local_ray`."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([str(RAY_IMPORT_PATH), *([path] if path else [])])}


def start_local_ray(num_cpus: int, env: dict[str, str] | None = None) -> None:
    """`ray.init` of a local Ray for one call, fit for a small busy machine: `num_cpus` CPUs, no dashboard, no
    worker logs copied to this process, Ray's processes without the slow import described above; `env`: more
    variables for Ray's processes (feature flags Ray reads when each process starts)."""
    import ray
    before = ray_processes()
    with _environ_lock:
        env = {**local_ray_env(), **(env or {})}
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=False)
        except BaseException:
            # A node that did not come up leaves the processes ray.init started (GCS, dashboard, monitors) running
            # until this process exits, and ray.shutdown() does not know them: end those, and only those.
            end_processes(ray_processes() - before)
            raise
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def ray_processes() -> set:
    """This process's descendants that run Ray's programs (psutil.Process objects; none without psutil)."""
    try:
        import psutil
        import ray
    except ImportError:
        return set()
    ray_dir = os.path.dirname(ray.__file__)
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if any(ray_dir in arg for arg in child.cmdline()):
                found.add(child)
        except psutil.ZombieProcess:    # one that failed (the raylet): reaped by end_processes
            found.add(child)
        except psutil.Error:            # ended meanwhile
            continue
    return found


def end_processes(processes: set, grace_s: float = 5.0) -> None:
    if not processes:
        return
    import psutil
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)      # reaps them (no zombies left in a long-lived kernel)
