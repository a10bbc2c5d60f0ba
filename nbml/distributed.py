"""Training on several GPUs or processes: `nbml.train(ds, devices=N)`.

The kernel never forks a worker (fastai's `notebook_launcher` fails once CUDA is initialised, and importing fastai
does that): it starts `torchrun` as a subprocess, and each of its N workers (`python -m nbml.distributed ARGS`)
opens the project from the store and runs the same training loop as one process (`nbml.training._run`), with the
network in DistributedDataParallel and each rank given a disjoint shard of every epoch. Between kernel and workers
there are only files in the run's folder (`<project>.d/distributed/run-<id>/`):

- `events.jsonl`: rank 0 appends the usual training events, one JSON object a line; the kernel tails it and
  re-emits them to the live monitor, then a last line with the saved model's folder;
- `stop`: created by the kernel on Stop; every rank looks for it after each batch and the ranks agree (an
  all-reduce) so that all of them stop after the same batch, and the best epoch is kept;
- `pid-<rank>`, `error-<rank>.json`, `log.txt`: what the kernel needs to name a worker that died and to leave no
  process behind.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from functools import partial
from pathlib import Path

from . import events as E
from ._process import pid_alive

__all__ = ["DistributedTrainingError", "world_size", "launcher"]

_POLL_S = 0.05
_RUNNING: set = set()        # torchrun processes of this kernel, ended at exit
_EVENTS = {cls.kind: cls for cls in (E.TrainStarted, E.PhaseStarted, E.LearningRateFound, E.BatchEnded,
                                     E.EpochEnded, E.TrainWarning, E.TrainEnded)}     # by their `kind` field


class DistributedTrainingError(RuntimeError):
    """A worker of a distributed run failed or died; the run is recorded as failed and every worker is ended."""


# -- the kernel's side ----------------------------------------------------------------------------------------------
def world_size(devices, device=None) -> tuple[int, str]:
    """(number of worker processes, "cuda" or "cpu") for `devices=N` or `"all"` (every visible GPU)."""
    import torch
    kind = str(device).split(":")[0] if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"devices= trains on CUDA GPUs or on CPU processes, not on {device!r}")
    gpus = torch.cuda.device_count() if kind == "cuda" else 0
    if devices == "all":
        if not gpus:
            raise ValueError("devices='all' means every GPU and this machine has none; give a number of CPU "
                             "processes instead, e.g. devices=2")
        return gpus, kind
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be a number of processes (1 or more) or 'all', not {devices!r}")
    if kind == "cuda" and devices > gpus:
        raise ValueError(f"devices={devices} asks for more GPUs than this machine has ({gpus}); use devices="
                         f"{gpus} or 'all', or device='cpu' for CPU processes")
    return devices, kind


def launcher(devices, settings: dict):
    """The function `nbml.train` runs in place of the one-process loop when `devices` asks for more than one
    process, and the seed every rank shares (their loaders must shuffle alike for the shards to be disjoint).

    `settings` are train()'s arguments that the workers repeat (arch, epochs, size, ...)."""
    from .data import Augment, _fresh_seed
    n, kind = world_size(devices, settings.get("device"))
    settings = dict(settings, seed=settings["seed"] if settings.get("seed") is not None else _fresh_seed() % 2**31)
    if isinstance(settings.get("augment"), Augment):
        settings["augment"] = {"augment": vars(settings["augment"])}
    if settings.get("weights") is not None:
        settings["weights"] = str(Path(settings["weights"]).expanduser().resolve())
    try:
        json.dumps(settings)
    except TypeError as e:
        raise ValueError(f"a distributed run passes train()'s arguments to its workers as JSON: {e}") from None
    return partial(_launch, n, kind, settings), settings["seed"]


def _check_shards(plan, n: int) -> None:
    n_train = int(plan.params.get("n_train", 0))
    per_rank = math.ceil(n_train / n)
    if n_train > plan.bs and per_rank < plan.bs:      # drop_last would leave a rank no batch at all
        raise ValueError(f"with devices={n} each process sees {per_rank} of the {n_train} training items, less "
                         f"than one batch of {plan.bs}: pass a smaller bs= (it is per process) or fewer devices")


def _launch(n: int, kind: str, settings: dict, plan, handle, notes):
    """Start torchrun with `n` workers, relay rank 0's events to `handle` and Stop to the workers, and return the
    Model rank 0 saved (loaded with `nbml.load`). Runs like `nbml.training._run`: in the caller's thread or in the
    handle's background thread."""
    from .training_loop import record_failure, versions
    ds = plan.ds
    t0 = time.perf_counter()
    try:
        _check_shards(plan, n)
        snapshot = ds.snapshot(plan.frame)
        params = dict(plan.params, world_size=n, launcher="torchrun")
        device = f"{kind} x{n}"
        run_id = ds._start_run(plan.arch, params, snapshot, device, versions())
    except BaseException as e:
        handle.status, handle.error = "failed", e
        handle._done.set()
        raise
    handle.run_id, handle.status = run_id, "running"
    folder = Path(ds.home) / "distributed" / f"run-{run_id}"
    args = dict(project=str(ds.path) if ds.path is not None else ds.url, max_pixels=getattr(ds, "max_pixels", None),
                run_id=run_id, snapshot=snapshot, settings=settings, kind=kind, kernel_pid=os.getpid(),
                folder=str(folder))
    proc = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "args.json").write_text(json.dumps(args))
        proc = _start(n, folder)
        model = _follow(proc, n, folder, ds, handle, device)
        # the run is recorded and its model loaded: the workers' exit (seconds) is awaited in the background
        threading.Thread(target=_end, args=(proc, folder, 60.0), name="nbml-end-workers", daemon=True).start()
        return model
    except BaseException as e:
        if proc is not None:
            _end(proc, folder)
        record_failure(ds, handle, run_id, t0, e)
        raise
    finally:
        handle._done.set()


def _start(n: int, folder: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "--max-restarts=0", "-m", "nbml.distributed", str(folder / "args.json")]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    with open(folder / "log.txt", "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=str(folder))
    proc.nbml_folder = folder
    (folder / "torchrun.pid").write_text(str(proc.pid))
    _RUNNING.add(proc)
    return proc


def _follow(proc: subprocess.Popen, n: int, folder: Path, ds, handle, device: str):
    """Tail rank 0's events; the Model once rank 0 says where it saved it, or an error if torchrun ends first."""
    from .model import load
    events, stop = folder / "events.jsonl", folder / "stop"
    offset, rest, ended, result = 0, b"", None, None
    while True:
        if handle.stopping and not stop.exists():
            stop.touch()
        code = proc.poll()                      # read before the events, so none written before exit is missed
        if events.exists():
            with open(events, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                message = json.loads(line)
                what = message.pop("kind")
                if what == "result":
                    result = message
                elif what == "train_ended":
                    ended = message               # told once the model is loaded, or replaced by the failure
                else:
                    if what == "train_started":
                        message["device"] = device       # "cpu x2", not rank 0's own device
                    event = _EVENTS[what](**message)
                    if isinstance(event, E.TrainWarning):
                        warnings.warn(event.message)
                    handle.emit(event)
        if result is not None or code is not None:
            break
        time.sleep(_POLL_S)
    if result is None or ended is None:
        raise DistributedTrainingError(_failure(folder, n, code))
    model = load(result["model_path"], dataset=ds)
    if result.get("temporary"):
        import shutil
        shutil.rmtree(result["model_path"], ignore_errors=True)
    handle.model, handle.status = model, ended["status"]
    handle.emit(E.TrainEnded(**ended))
    return model


def _failure(folder: Path, n: int, code: int | None) -> str:
    """One or two sentences on which worker failed first and why: torchrun's root cause, with the Python error
    that worker wrote if it wrote one (the others then fail too, or are ended, which says nothing)."""
    log = folder / "log.txt"
    errors = {}
    for path in folder.glob("error-*.json"):
        error = json.loads(path.read_text())
        errors[int(error["rank"])] = error["error"]
    text = log.read_text(errors="replace") if log.exists() else ""
    root = text.split("Root Cause", 1)[1] if "Root Cause" in text else ""
    rank = re.search(r"\brank\s*:\s*(\d+)", root)
    exitcode = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    rank = int(rank.group(1)) if rank else min(errors, default=None)
    tail = f"every worker was ended; their log: {log}"
    if rank in errors:
        return f"worker {rank} of {n} failed: {errors[rank]} ({tail})"
    who = f"worker {rank} of {n}" if rank is not None else "a worker"
    if exitcode and int(exitcode.group(1)) < 0:
        try:
            name = signal.Signals(-int(exitcode.group(1))).name
        except ValueError:
            name = f"signal {-int(exitcode.group(1))}"
        why = f"was killed by {name}" + (" (out of memory, or killed from outside)" if name == "SIGKILL" else "")
    elif exitcode:
        why = f"exited with code {exitcode.group(1)}"
    else:
        why = f"ended without a result (torchrun's exit code {code})"
    return f"{who} {why}, so training stopped and {tail}"


def _end(proc: subprocess.Popen, folder: Path, exit_s: float = 0.0, grace_s: float = 10.0) -> None:
    """Give torchrun `exit_s` to end by itself, then end it (it ends its workers) and any worker still there: no
    process is left behind."""
    try:
        proc.wait(exit_s)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    for path in folder.glob("pid-*"):        # each worker leads its own process group (torchrun's doing)
        try:
            pid = int(path.read_text())
        except ValueError:
            continue
        if _is_worker(pid):
            _signal_group(pid, signal.SIGKILL)
            _reap(pid)
    _RUNNING.discard(proc)


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:                           # no /proc (macOS): the pid file is all there is
        return pid_alive(pid)
    return b"nbml.distributed" in cmdline


def _signal_group(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int, timeout_s: float = 5.0) -> None:
    """Wait for a killed worker to be gone (it is torchrun's child, reaped by init once torchrun has ended)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and _is_worker(pid):
        status = Path(f"/proc/{pid}/stat")
        if status.exists() and ") Z " in status.read_text():
            return
        time.sleep(0.02)


@atexit.register
def _end_all() -> None:
    for proc in list(_RUNNING):
        _end(proc, proc.nbml_folder, grace_s=3.0)


# -- a worker's side --------------------------------------------------------------------------------------------
def _as_rank(ds, run_id: int, snapshot: str, main: bool) -> None:
    """Make this worker's project the one a rank sees: the run the kernel started (no new one), written by rank 0
    alone, and the data the kernel saw. Instance attributes over three Store methods, in this process only, so the
    project stays a Dataset for everything else the loop asks of it."""
    update, take = ds._update_run, ds.snapshot

    def checked_snapshot(frame) -> str:
        if take(frame) != snapshot:
            raise RuntimeError("the project's labels or splits changed between starting the run and its workers "
                               "reading them; start the run again")
        return snapshot

    ds.snapshot = checked_snapshot
    ds._start_run = lambda *args, **kwargs: run_id
    ds._update_run = update if main else (lambda *args, **kwargs: None)


class _Rank:
    """This process's place in the run; `callback()` gives each Learner the fastai callback that makes it
    distributed (`plan.dist` in nbml.training)."""

    def __init__(self, rank: int, world: int, device, stop_path: Path, handle):
        self.rank, self.world, self.device, self.stop_path, self.handle = rank, world, device, stop_path, handle

    def callback(self):
        import torch
        import torch.distributed as dist
        from fastai.callback.core import Callback
        rank = self

        class DistributedTrainer(Callback):
            """DDP around the network and a shard of each training epoch; validation runs whole on every rank
            (the ranks' networks are the same, so are their metrics). lr_find runs on each rank alone and the
            ranks take rank 0's losses, so they pick the same learning rate. Stop is agreed after every batch."""
            order = -5      # after_batch before StopOnRequest (0); after_fit after LossesToCpu (-10)

            def before_fit(self):
                self.alone = hasattr(self.learn, "lr_finder")
                if self.alone:
                    return
                ids = [rank.device.index] if rank.device.type == "cuda" else None
                self.learn.model = torch.nn.parallel.DistributedDataParallel(self.learn.model, device_ids=ids)
                self.learn.dls.train.shard = (rank.rank, rank.world)

            def after_batch(self):
                if self.training and not self.alone:
                    rank.agree_on_stop()

            def after_fit(self):
                if self.alone:
                    found = [list(map(float, self.recorder.lrs)), [float(x) for x in self.recorder.losses]]
                    dist.broadcast_object_list(found, src=0)
                    self.recorder.lrs, self.recorder.losses = found[0], [torch.tensor(x) for x in found[1]]
                    rank.agree_on_stop()
                    return
                self.learn.model = self.learn.model.module
                self.learn.dls.train.shard = None

        return DistributedTrainer()

    def agree_on_stop(self) -> None:
        """Stop every rank when any one has seen the stop file: all of them then stop after the same batch."""
        import torch
        import torch.distributed as dist
        flag = torch.tensor([1.0 if self.stop_path.exists() else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self.handle.stop()


class _EventFile:
    """Rank 0's subscriber: each event as one JSON line, flushed at once, for the kernel to tail."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, event) -> None:
        self.write(E.as_dict(event))

    def write(self, message: dict) -> None:
        self.file.write(json.dumps(message, default=str) + "\n")
        self.file.flush()


_ON_KERNEL_GONE: list = []     # what a worker does before it ends for want of a kernel: record the run as failed


def _record_kernel_gone(runs, update_run, run_id: int, force: bool = False) -> None:
    """Mark the run failed, unless it already ended (every rank tries: the first to see the kernel gone may be the
    only one left, torchrun ends the others). `force`: also over the error of a rank that failed first because
    another rank had already left for want of the kernel (gloo's "connection closed" says nothing of the cause)."""
    frame = runs()
    statuses = frame.loc[frame["id"] == run_id, "status"] if not frame.empty else frame
    if len(statuses) and (statuses.isin(["running", "failed"]) if force else statuses == "running").any():
        update_run(run_id, status="failed", finished_at=time.time(),
                   error="the kernel that started this distributed run ended during it, so its workers ended too")


def _watch_kernel(kernel_pid: int) -> None:
    """End this worker when the kernel that started the run has gone (it was killed, or it exited)."""
    def watch():
        while pid_alive(kernel_pid):
            time.sleep(1.0)
        for fn in _ON_KERNEL_GONE:
            try:
                fn()
            except Exception:
                pass
        os._exit(3)
    threading.Thread(target=watch, name="nbml-watch-kernel", daemon=True).start()


def _worker(args_path: str) -> int:
    import torch
    import torch.distributed as dist
    args = json.loads(Path(args_path).read_text())
    folder = Path(args["folder"])
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    (folder / f"pid-{rank}").write_text(str(os.getpid()))
    _watch_kernel(int(args["kernel_pid"]))
    try:
        if args["kind"] == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # fastai reads these for its own DistributedTrainer (only rank 0 saves, load waits at a barrier); here every
        # rank is a whole Learner and nbml.distributed does the collectives, so fastai must see one process
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(name, None)
        try:
            _train_rank(args, rank, world, device, folder)
        finally:
            dist.destroy_process_group()
        return 0
    except BaseException as e:
        if not pid_alive(int(args["kernel_pid"])):     # the kernel's end is the cause, whatever this rank saw of it
            for fn in _ON_KERNEL_GONE:
                try:
                    fn(force=True)
                except Exception:
                    pass
        message = str(e).strip().splitlines()[0][:500] if str(e).strip() else ""
        (folder / f"error-{rank}.json").write_text(json.dumps({"rank": rank, "error": f"{type(e).__name__}: "
                                                                                     f"{message}"}))
        raise


def _train_rank(args: dict, rank: int, world: int, device, folder: Path) -> None:
    import random
    import numpy as np
    import torch
    from ._thirdparty import import_fastai
    from .dataset import Dataset
    from .data import Augment
    from .training_loop import TrainingHandle, prepare, run
    settings = dict(args["settings"])
    if isinstance(settings.get("augment"), dict):
        settings["augment"] = Augment(**settings["augment"]["augment"])
    import_fastai()
    seed = int(settings["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    kwargs = {} if args.get("max_pixels") is None else {"max_pixels": int(args["max_pixels"])}
    ds = Dataset(args["project"], **kwargs)
    _ON_KERNEL_GONE.append(partial(_record_kernel_gone, ds.runs, ds._update_run, int(args["run_id"])))
    try:
        main = rank == 0
        plan, notes = prepare(ds, settings["arch"], settings["epochs"], settings["size"], settings["bs"],
                               settings["lr"], settings["pretrained"], settings["weights"], settings["freeze_epochs"],
                               settings["valid_pct"], seed, str(device), settings["augment"], settings["save"])
        handle = TrainingHandle()
        events = _EventFile(folder / "events.jsonl") if main else None
        if main:
            handle.subscribe(events)
        _as_rank(ds, int(args["run_id"]), args["snapshot"], main)
        plan.dist = _Rank(rank, world, device, folder / "stop", handle)
        want_saved = plan.save
        plan.save = want_saved and main
        plan.params = dict(plan.params, world_size=world, launcher="torchrun")
        model = run(plan, handle, notes if main else [])
        if main:
            path, temporary = ds.home / "models" / f"run-{args['run_id']}", False
            if not want_saved:
                path, temporary = model.save(folder / "model"), True
            events.write({"kind": "result", "model_path": str(path), "temporary": temporary})
    finally:
        ds.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m nbml.distributed ARGS.json (started by nbml.train(ds, devices=N) under torchrun)")
    sys.exit(_worker(sys.argv[1]))
