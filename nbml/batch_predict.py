"""`nbml.predict_files`: score a folder (or a list) of files, millions of them, with an exported artifact.

The artifact's ONNX graph runs through the server's own code (`nbml.serving.app.inputs_for`: the kind's file
reading and decoding, and its ONNX Runtime runner) in several processes: a local process pool, or Ray Data's
`map_batches` with each actor holding one session. Results go to Parquet shards:

    predictions.parquet/           a folder that pandas, pyarrow, Spark and Ray read as one table
      _manifest.json               the model's and the file list's fingerprints, shard size, shard count
      part-00000.parquet           files [0, shard_size) in list order: path, label, confidence, one column per
      part-00001.parquet             class, error (null when the file was scored, else why it could not be)
      _SUCCESS                     written last: every file has its row (JSON: counts, seconds)

A shard is written whole (a temporary file, fsync, rename) by the process that started the run, so a run that is
killed leaves complete shards only; started again with the same arguments it scores the missing shards and nothing
else. Files are the folder's files with the kind's extensions, recursively, sorted (hidden ones left out), or the
list as given without repeats; paths are stored absolute.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["predict_files", "ENGINES"]

ENGINES = ("local", "ray")
BATCH_SIZE = 64
SHARD_SIZE = 5_000
MANIFEST, DONE = "_manifest.json", "_SUCCESS"
FORMAT = "nbml-predictions"
COLUMNS = ("path", "label", "confidence", "error")    # besides one probability column per class
PROGRESS_EVERY_S = 10.0


def predict_files(artifact, paths_or_folder, out="predictions.parquet", *, engine: str = "local",
                  batch_size: int = BATCH_SIZE, shard_size: int | None = None, workers: int | None = None,
                  ray_address: str | None = None, quiet: bool = False) -> Path:
    """Score every file with the exported model in `artifact` (a folder written by `model.export`) and write one
    row per file to the Parquet shards under `out` (see the module docstring); returns `out`, ready for
    `pd.read_parquet(out)`.

    `paths_or_folder`: a folder (its image files, or .txt files for a text model, recursively) or a list of
    paths. `engine="local"`: `workers` processes on this machine (default: one per core); `engine="ray"`: Ray Data
    on the Ray this process is connected to, else the cluster at `ray_address`, else a local Ray started for this
    call and shut down after it. `batch_size` files go through the model at once; `shard_size` files (default
    5,000) per Parquet file, the unit a killed run resumes from. A file that cannot be read or decoded gets a row
    with the reason in `error`. Progress is a bar in a notebook, a line every 10 s elsewhere (`quiet=True`: none).

    Raises:
        TypeError: `artifact` is not a path.
        FileNotFoundError: `artifact` holds no config.json, or the folder to score does not exist.
        ValueError: `engine`, `batch_size` or `shard_size` is out of range, `artifact` is not an exported nbml model or
            takes no files (tables), the folder holds no files to score, or `out` holds another run's predictions.
        FileExistsError: `out` exists and is not a predict_files output.
        RuntimeError: the shards written do not hold one row per file.

    Examples:
        >>> out = nbml.predict_files("export/pets", "new-photos/", "preds.parquet")
        >>> pd.read_parquet(out).sort_values("confidence").head()
    """
    from .serving.app import Settings, inputs_for
    from .serving.service import read_artifact as _read_artifact
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")
    if int(batch_size) < 1 or (shard_size is not None and int(shard_size) < 1):
        raise ValueError("batch_size and shard_size must be at least 1")
    if not isinstance(artifact, (str, os.PathLike)):
        raise TypeError(f"artifact is the folder an exported model is in, not a {type(artifact).__name__}: "
                        f"write one with model.export('my-model') and pass 'my-model'")
    folder, config = _read_artifact(artifact)
    inputs = inputs_for(folder, config, Settings())
    if not hasattr(inputs, "read_file"):
        raise ValueError(f"predict_files scores files, and a {inputs.kind} model takes no files: use "
                         f"model.predict_many(...) on its rows")
    classes = [str(c) for c in config["classes"]]
    clash = sorted(set(classes) & set(COLUMNS))
    if clash:
        raise ValueError(f"the model has a class named {clash[0]!r}, which is also a column of the predictions "
                         f"table ({', '.join(COLUMNS)}); rename the class to use predict_files")
    files = list_files(paths_or_folder, inputs.file_extensions, inputs.noun)
    out = Path(os.fspath(out)).expanduser().absolute()
    manifest = _open_output(out, folder, config, files, shard_size)
    shard_size = manifest["shard_size"]
    pending = [s for s in range(manifest["shards"]) if not _shard_path(out, s).exists()]
    progress = _Progress(len(files), len(files) - sum(_shard_len(s, shard_size, len(files)) for s in pending),
                         quiet)
    started = time.perf_counter()
    if pending:
        writer = _ShardWriter(out, files, shard_size, classes, pending)
        batches = _local_batches if engine == "local" else _ray_batches
        for indices, probs, errors in batches(folder, files, pending, shard_size, int(batch_size), workers,
                                              ray_address):
            writer.add(indices, probs, errors)
            progress.update(len(indices), sum(e is not None for e in errors))
        writer.check_finished()
    summary = _finish(out, len(files), engine, time.perf_counter() - started, scored=progress.scored_now)
    progress.close(summary, out)
    return out


# ---- the file list ---------------------------------------------------------------------------------------------

def list_files(paths_or_folder, extensions: Iterable[str], noun: str = "image") -> list[str]:
    """Absolute paths: a folder's files with one of `extensions` (recursive, sorted, hidden names skipped), or a
    list's paths in order without repeats."""
    if isinstance(paths_or_folder, (str, os.PathLike)):
        root = Path(os.fspath(paths_or_folder)).expanduser()
        if root.is_dir():
            found = sorted(_walk(os.path.abspath(root), frozenset(e.lower() for e in extensions)))
            if not found:
                raise ValueError(f"{root} holds no {noun} files ({', '.join(sorted(extensions))}): give a folder "
                                 f"of them or a list of paths")
            return found
        if root.exists():
            raise ValueError(f"{root} is a file: give a folder or a list of paths (a single path in a list)")
        raise FileNotFoundError(f"{root} does not exist: give a folder of {noun} files or a list of paths")
    files = list(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in paths_or_folder))
    if not files:
        raise ValueError("the list of paths is empty: nothing to score")
    return files


def _walk(top: str, extensions: frozenset) -> Iterator[str]:
    with os.scandir(top) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, extensions)
            elif os.path.splitext(entry.name)[1].lower() in extensions:
                yield entry.path


def _files_digest(files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(os.fsencode(f) + b"\0")
    return h.hexdigest()


def _model_digest(folder: Path, config: dict) -> str:
    h = hashlib.sha256(json.dumps(config["classes"]).encode())
    with open(folder / (config.get("onnx") or {}).get("file", "model.onnx"), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---- the output folder -----------------------------------------------------------------------------------------

def _shard_path(out: Path, shard: int) -> Path:
    return out / f"part-{shard:05d}.parquet"


def _shard_len(shard: int, shard_size: int, n: int) -> int:
    return min(n, (shard + 1) * shard_size) - shard * shard_size


def _write_durably(path: Path, write) -> None:
    """`write(file)` into a hidden temporary file, fsync, rename over `path`, fsync the folder: all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    _write_durably(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def _open_output(out: Path, folder: Path, config: dict, files: list[str], shard_size: int | None) -> dict:
    """The run's manifest: written for a new `out`, checked against this call for an existing one."""
    want = {"format": FORMAT, "version": 1, "model": str(folder), "model_sha256": _model_digest(folder, config),
            "classes": [str(c) for c in config["classes"]], "files": len(files),
            "files_sha256": _files_digest(files)}
    manifest_file = out / MANIFEST
    if manifest_file.is_file():
        have = json.loads(manifest_file.read_text())
        if have.get("format") != FORMAT:
            raise ValueError(f"{manifest_file} was not written by nbml.predict_files; give another `out`")
        if have["model_sha256"] != want["model_sha256"]:
            raise ValueError(f"{out} holds predictions of another model ({have['model']}): give another `out`, "
                             f"or delete that folder to start over")
        if have["files_sha256"] != want["files_sha256"]:
            raise ValueError(f"{out} holds predictions for another list of files ({have['files']:,} files then, "
                             f"{len(files):,} now): give another `out`, or delete that folder to start over")
        if shard_size is not None and int(shard_size) != have["shard_size"]:
            raise ValueError(f"{out} was started with shard_size={have['shard_size']}: leave shard_size out to "
                             f"resume it")
        for stale in out.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        return have
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not a predict_files output: give another `out`")
    out.mkdir(parents=True, exist_ok=True)
    size = int(shard_size or SHARD_SIZE)
    manifest = {**want, "shard_size": size, "shards": -(-len(files) // size), "started": time.time()}
    _write_json(manifest_file, manifest)
    return manifest


class _ShardWriter:
    """Collects scored files (in any order) and writes each shard once all of its files are in."""

    def __init__(self, out: Path, files: list[str], shard_size: int, classes: list[str], pending: list[int]):
        self.out, self.files, self.shard_size, self.classes = out, files, shard_size, classes
        self.missing = {s: _shard_len(s, shard_size, len(files)) for s in pending}
        self.seen = {s: np.zeros(n, bool) for s, n in self.missing.items()}
        self.parts: dict[int, list] = {s: [] for s in pending}

    def add(self, indices: np.ndarray, probs: np.ndarray, errors: list) -> None:
        indices = np.asarray(indices, np.int64)
        shards = indices // self.shard_size
        for shard in map(int, np.unique(shards)):
            if shard not in self.parts:        # written already: a retried task's repeat
                continue
            rows = np.flatnonzero(shards == shard)
            offsets = indices[rows] - shard * self.shard_size
            rows = rows[~self.seen[shard][offsets]]      # a file comes back twice only when a task was retried
            self.seen[shard][indices[rows] - shard * self.shard_size] = True
            self.parts[shard].append((indices[rows], probs[rows], [errors[i] for i in rows]))
            self.missing[shard] -= len(rows)
            if self.missing[shard] == 0:
                self._write(shard)

    def _write(self, shard: int) -> None:
        import pyarrow.parquet as pq
        parts = self.parts.pop(shard)
        del self.seen[shard]
        indices = np.concatenate([p[0] for p in parts])
        order = np.argsort(indices, kind="stable")
        probs = np.concatenate([p[1] for p in parts])[order]
        errors = [e for p in parts for e in p[2]]
        errors = [errors[i] for i in order]
        table = predictions_table([self.files[i] for i in indices[order]], probs, errors, self.classes)
        _write_durably(_shard_path(self.out, shard), lambda f: pq.write_table(table, f))

    def check_finished(self) -> None:
        if self.parts:
            raise RuntimeError(f"the engine returned no results for {sum(self.missing.values()):,} files of "
                               f"{len(self.parts)} shards; run predict_files again to score them")


def _printable(path: str) -> str:
    """A path as valid UTF-8 (a file name that is not: its odd bytes written as \\xNN)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def predictions_table(paths: list[str], probs: np.ndarray, errors: list, classes: list[str]):
    """The shards' pyarrow table: path, label, confidence, a probability per class, error (nulls where it failed)."""
    import pyarrow as pa
    failed = np.array([e is not None for e in errors], bool)
    best = np.where(failed, 0, np.nan_to_num(probs).argmax(1)) if len(probs) else np.zeros(0, np.int64)
    columns = {"path": pa.array([_printable(p) for p in paths], pa.string()),
               "label": pa.array([None if f else classes[b] for f, b in zip(failed, best)], pa.string()),
               "confidence": pa.array(probs.max(1, initial=0.0).astype(np.float32), mask=failed)}
    for j, c in enumerate(classes):
        columns[c] = pa.array(np.ascontiguousarray(probs[:, j], np.float32), mask=failed)
    columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)


def _finish(out: Path, n_files: int, engine: str, seconds: float, scored: int) -> dict:
    """Check that the shards hold every file once, then write the finished marker."""
    import pyarrow.parquet as pq
    shards = sorted(out.glob("part-*.parquet"))
    rows = errors = 0
    for shard in shards:
        column = pq.read_table(shard, columns=["error"]).column("error")
        rows += len(column)
        errors += len(column) - column.null_count
    if rows != n_files:
        raise RuntimeError(f"{out} holds {rows:,} rows for {n_files:,} files; delete it and run again")
    summary = {"files": n_files, "unreadable": errors, "shards": len(shards), "engine": engine,
               "scored_in_last_run": scored, "seconds_last_run": round(seconds, 3), "finished": time.time()}
    _write_json(out / DONE, summary)
    return summary


# ---- the engines: each yields (file indices, probabilities [n, classes], error or None per file) -----------------

def _batches_of(files: list[str], pending: list[int], shard_size: int, batch_size: int):
    """(first file index, paths) for every batch of the pending shards, in file order."""
    for shard in pending:
        stop = min(len(files), (shard + 1) * shard_size)
        for start in range(shard * shard_size, stop, batch_size):
            yield start, files[start:min(start + batch_size, stop)]


class Scorer:
    """What each worker holds: the kind's file reading and the ONNX Runtime session (the server's own code)."""

    def __init__(self, folder, threads: int = 1):
        from .serving.app import Settings, inputs_for
        from .serving.service import read_artifact as _read_artifact
        folder, config = _read_artifact(folder)
        self.inputs = inputs_for(folder, config, Settings())
        self.runner = self.inputs.make_runner(folder, config, "cpu", threads)
        self.n_classes = len(config["classes"])

    def score(self, paths: Sequence[str]) -> tuple[np.ndarray, list]:
        """(probabilities, NaN rows where a file failed; the reason per file, None where it was scored)."""
        values, rows, errors = [], [], [None] * len(paths)
        for i, path in enumerate(paths):
            try:
                values.append(self.inputs.read_file(path))
                rows.append(i)
            except ValueError as e:     # ImageError and the text rules' errors: the file's own fault
                errors[i] = str(e) or type(e).__name__
        probs = np.full((len(paths), self.n_classes), np.nan, np.float32)
        if values:
            if isinstance(values[0], np.ndarray):
                batch = np.stack(values)
            else:
                batch = np.empty(len(values), object)
                batch[:] = values
            probs[rows] = self.runner(batch)
        return probs, errors


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_worker_scorer: Scorer | None = None


def _exit_with_parent(parent: int) -> None:
    """A pool worker whose parent died (killed, say) exits instead of waiting for work forever."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(folder: str, threads: int, parent: int) -> None:
    global _worker_scorer
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="nbml-parent-watch").start()
    _worker_scorer = Scorer(folder, threads)


def _score_in_worker(start: int, paths: list[str]):
    probs, errors = _worker_scorer.score(paths)
    return np.arange(start, start + len(paths)), probs, errors


def _local_batches(folder, files, pending, shard_size, batch_size, workers, ray_address):
    """A pool of fresh processes (nothing of the notebook's process is copied), a few batches in flight per
    process; results come back in file order."""
    if ray_address is not None:
        raise ValueError("ray_address is for engine='ray'")
    workers = int(workers or _cores())
    threads = max(1, _cores() // workers)
    tasks = _batches_of(files, pending, shard_size, batch_size)
    if workers == 1:
        scorer = Scorer(folder, threads)
        for start, paths in tasks:
            probs, errors = scorer.score(paths)
            yield np.arange(start, start + len(paths)), probs, errors
        return
    # loky (joblib's process pool, already installed with scikit-learn) starts fresh interpreters like "spawn",
    # without running the caller's script again: a script needs no `if __name__ == "__main__"` guard.
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import BrokenProcessPool
    pool = get_reusable_executor(max_workers=workers, timeout=30, initializer=_init_worker,
                                 initargs=(str(folder), threads, os.getpid()))
    in_flight: deque = deque()
    try:
        for task in tasks:
            in_flight.append(pool.submit(_score_in_worker, *task))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    except BrokenProcessPool:
        raise RuntimeError("a predict_files worker process died (out of memory, or killed); the shards written so "
                           "far are kept: run predict_files again to score the rest") from None
    finally:
        for future in in_flight:
            future.cancel()


class RayScorer:
    """Ray Data's stateful `map_batches` class: one Scorer (one ONNX Runtime session) per actor. `_ray_batches`
    subclasses it with the artifact's folder and the session's threads as class attributes (no constructor
    arguments, which Ray would keep in its object store)."""
    folder: str = ""
    threads: int = 1

    def __init__(self):
        self.scorer = Scorer(self.folder, self.threads)

    def __call__(self, batch: dict) -> dict:
        probs, errors = self.scorer.score([str(p) for p in batch["path"]])
        return {"index": batch["index"], "probs": probs,
                "error": np.array(["" if e is None else e for e in errors], object)}


# Starting a local Ray (and why its processes get a PYTHONPATH of their own): nbml/_ray.py, shared with the server.
from ._ray import RAY_IMPORT_PATH, start_local_ray  # noqa: E402,F401


def _ray_batches(folder, files, pending, shard_size, batch_size, workers, ray_address):
    """Ray Data: the pending files as blocks of a few batches, `map_batches(RayScorer)` over an actor pool."""
    try:
        import pyarrow as pa
        import ray
        import ray.data
    except ImportError:
        raise ImportError('engine="ray" needs Ray Data: pip install "nbml[ray]" (or "ray[data]")') from None
    started = False
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    if not ray.is_initialized():
        try:
            if ray_address:
                ray.init(address=ray_address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
            else:
                start_local_ray(int(workers or _cores()))
        except Exception as e:    # Ray's own start-up errors (a node that timed out, an address not reached)
            where = f"the Ray cluster at {ray_address}" if ray_address else "a local Ray"
            raise RuntimeError(f"{where} could not be started or reached ({e}); try again, or score with "
                               f"engine='local'") from None
        started = True
    try:
        with warnings.catch_warnings():    # Ray Data's context warns about its own deprecated fields when made
            warnings.simplefilter("ignore", DeprecationWarning)
            ray.data.DataContext.get_current().enable_progress_bars = False    # predict_files shows its own
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = int(workers or cpus)
        threads = max(1, cpus // workers) if not ray_address else 1
        rows = min(shard_size, 4 * batch_size)
        blocks = []
        for shard in pending:
            stop = min(len(files), (shard + 1) * shard_size)
            for start in range(shard * shard_size, stop, rows):
                end = min(start + rows, stop)
                blocks.append(pa.table({"index": pa.array(np.arange(start, end)),
                                        "path": pa.array([_printable(p) for p in files[start:end]], pa.string())}))
        scorer = type("RayScorer", (RayScorer,), {"folder": str(folder), "threads": threads})
        data = ray.data.from_arrow(blocks).map_batches(
            scorer, batch_size=batch_size, batch_format="numpy", num_cpus=threads,
            compute=ray.data.ActorPoolStrategy(size=workers))
        ray_data_log.setLevel(logging.ERROR)    # its INFO lines on each run, and a note that its bars are off
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            yield batch["index"], batch["probs"], [e or None for e in batch["error"]]
    finally:
        ray_data_log.setLevel(level)
        if started:
            ray.shutdown()


# ---- progress ----------------------------------------------------------------------------------------------------

class _Progress:
    """A fastprogress bar in a notebook; elsewhere a line every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int, done: int, quiet: bool):
        from ._notebook import in_notebook
        self.total, self.done, self.quiet = total, done, quiet
        self.scored_now = self.failed_now = 0
        self.started = self.last = time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.bar = None
        if not quiet and done < total and in_notebook():
            from fastprogress.fastprogress import progress_bar
            self.bar = progress_bar(range(total - done), leave=True)   # what this call scores
            self.bar.update(0)
        if not quiet and done:
            print(f"predict_files: resuming, {done:,} of {total:,} files already scored", flush=True)

    def _rate(self) -> float:
        """Files per second since the first results came back (engines take a while to start)."""
        if self.first is None:
            return 0.0
        return (self.scored_now - self.first[1]) / max(time.perf_counter() - self.first[0], 1e-9)

    def update(self, n: int, failed: int) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), n)
        self.done += n
        self.scored_now += n
        self.failed_now += failed
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.comment = f"{self._rate():,.0f} files/s, {self.failed_now:,} unreadable"
            self.bar.update(self.scored_now)
        elif time.perf_counter() - self.last >= PROGRESS_EVERY_S:
            self.last = time.perf_counter()
            rate = self._rate()
            speed = (f"{rate:,.0f} files/s, about {(self.total - self.done) / rate:,.0f} s left" if rate
                     else "starting")
            print(f"predict_files: {self.done:,}/{self.total:,} files ({self.done / self.total:.0%}), "
                  f"{self.failed_now:,} unreadable, {speed}", flush=True)

    def close(self, summary: dict, out: Path) -> None:
        if self.quiet:
            return
        seconds = time.perf_counter() - self.started
        now = (f"{self.scored_now:,} scored now in {seconds:.1f} s ({self.scored_now / seconds:,.0f} files/s); "
               if self.scored_now else "nothing left to score; ")
        print(f"predict_files: {summary['files']:,} files, {summary['unreadable']:,} unreadable; {now}"
              f"pd.read_parquet({str(out)!r})", file=sys.stdout, flush=True)
