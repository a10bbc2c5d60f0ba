"""`nbml.predict_files`: the same predictions from the local pool, from Ray Data and from `model.predict_many`;
unreadable files as rows with a reason; a run killed with SIGKILL and started again."""
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import COLOURS, trained_and_exported
from PIL import Image

import nbml
from nbml.batch_predict import DONE, MANIFEST

N_IMAGES = 2_000
BAD = {"not-an-image.png": b"<html><body>a web page</body></html>", "empty.jpg": b""}


def generated_images(folder, n, seed=1):
    """n small noisy images of the three colours, PNG and JPEG, over a few subfolders."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS.values())
    for i in range(n):
        sub = folder / f"part{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        arr = np.clip(np.array(colours[i % 3]) + rng.integers(-90, 90, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(sub / (f"{i:05d}.png" if i % 2 else f"{i:05d}.jpg"), quality=90)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_files")
    _, ds, model, artifact = trained_and_exported(root, "colour-model")
    folder = generated_images(root / "to-score", N_IMAGES)
    for name, data in BAD.items():
        (folder / name).write_bytes(data)
    truncated = (folder / "part1" / "00001.png").read_bytes()
    (folder / "part1" / "truncated.png").write_bytes(truncated[:len(truncated) // 2])
    (folder / "notes.csv").write_text("not listed: not an image extension")
    yield SimpleNamespace(root=root, model=model, artifact=artifact, folder=folder, cache={})
    ds.close()


def local_run(env):
    """engine="local" on the folder, once per module: (output folder, table)."""
    if "local" not in env.cache:
        out = env.root / "local.parquet"
        nbml.predict_files(env.artifact, env.folder, out, engine="local", workers=2, shard_size=300, quiet=True)
        env.cache["local"] = out, pd.read_parquet(out)
    return env.cache["local"]


def test_local_equals_predict_many_and_reports_bad_files(env):
    out, table = local_run(env)
    files = sorted(str(p) for p in env.folder.rglob("*") if p.suffix in (".png", ".jpg"))
    assert table["path"].tolist() == files                          # every file once, in the listed order
    assert json.loads((out / DONE).read_text())["unreadable"] == 3
    assert len(list(out.glob("part-*.parquet"))) == json.loads((out / MANIFEST).read_text())["shards"] == 7

    failed = table[table["error"].notna()].set_index("path")["error"]
    assert failed[str(env.folder / "not-an-image.png")].startswith("not an image")
    assert failed[str(env.folder / "empty.jpg")] == "empty file (0 bytes)"
    assert "truncated" in failed[str(env.folder / "part1" / "truncated.png")]
    assert table.loc[table["error"].notna(), ["label", "confidence", *COLOURS]].isna().all().all()

    good = table[table["error"].isna()].reset_index(drop=True)
    assert len(good) == N_IMAGES
    good = good.iloc[::4].reset_index(drop=True)    # torch on a quarter of them (500), for the test's time
    want = env.model.predict_many(good["path"].tolist())
    classes = env.model.classes
    np.testing.assert_allclose(good[classes].to_numpy(), want[classes].to_numpy(), atol=1e-4)   # ONNX vs torch
    top2 = np.sort(want[classes].to_numpy(), 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3                    # a near tie may flip between ONNX and torch
    assert clear.mean() > 0.95
    assert (good["label"][clear] == want["label"][clear]).all()
    np.testing.assert_allclose(good["confidence"], good[classes].max(axis=1))


def test_ray_equals_local(env):
    """On a local Ray started for the call (2 CPUs here and in CI): no skip when the machine is busy, since Ray's
    processes no longer spend seconds on jsonschema's grammar (test_local_ray_processes_skip_the_slow_import)."""
    ray = pytest.importorskip("ray")
    _, local = local_run(env)
    out = env.root / "ray.parquet"
    pythonpath = os.environ.get("PYTHONPATH")
    nbml.predict_files(env.artifact, env.folder, out, engine="ray", shard_size=300, quiet=True)
    assert not ray.is_initialized()                 # the local Ray started for the call was shut down
    assert os.environ.get("PYTHONPATH") == pythonpath
    table = pd.read_parquet(out)
    pd.testing.assert_frame_equal(table.drop(columns=[*COLOURS, "confidence"]),
                                  local.drop(columns=[*COLOURS, "confidence"]))
    np.testing.assert_allclose(table[[*COLOURS, "confidence"]].to_numpy(),
                               local[[*COLOURS, "confidence"]].to_numpy(), atol=1e-6)


def test_local_ray_processes_skip_the_slow_import():
    """Ray's own processes (those ray.init starts, a worker) start with nbml/_ray_path first on PYTHONPATH: their
    jsonschema works, without rfc3987_syntax's grammar; this process's environment is left as it was."""
    ray = pytest.importorskip("ray")
    from nbml.batch_predict import RAY_IMPORT_PATH, start_local_ray
    pythonpath = os.environ.get("PYTHONPATH")
    start_local_ray(2)
    try:
        assert os.environ.get("PYTHONPATH") == pythonpath

        def probe():          # nested: Ray sends it by value, the worker need not import this test module
            import jsonschema
            schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
            jsonschema.validate({"n": 1}, schema)
            try:
                jsonschema.validate({"n": "one"}, schema)
                checks = False
            except jsonschema.ValidationError:
                checks = True
            return (checks, sys.modules.get("rfc3987_syntax") is not None,
                    "iri" in jsonschema.FormatChecker.checkers, os.environ.get("PYTHONPATH", ""))

        checks, grammar, iri, worker_path = ray.get(ray.remote(probe).remote(), timeout=120)
        assert (checks, grammar, iri) == (True, False, False)
        assert worker_path.split(os.pathsep)[0] == str(RAY_IMPORT_PATH)
        # The processes ray.init started (GCS, raylet, dashboard, monitors); the raylet's agents and workers get
        # its environment (their own /proc/<pid>/environ is overwritten by the process titles Ray gives them).
        ray_dir = os.path.dirname(ray.__file__)       # (this process's other children: the local pool's workers)
        started = {program(p.cmdline()): p.environ().get("PYTHONPATH") for p in psutil.Process().children()
                   if any(ray_dir in arg for arg in p.cmdline())}
        assert {"gcs_server", "raylet", "dashboard.py", "log_monitor.py"} <= set(started)
        assert all(path.split(os.pathsep)[0] == str(RAY_IMPORT_PATH) for path in started.values()), started
    finally:
        ray.shutdown()


def program(cmdline: list[str]) -> str:
    """The name of the program a command line runs: the binary's, or the script's after `python [-u]`."""
    return os.path.basename(next(a for a in cmdline if not a.startswith("-") and "python" not in os.path.basename(a)))


AGENT_THAT_DIES = """
import os, sys
if any(arg.endswith(os.path.join("dashboard", "agent.py")) for arg in sys.argv):
    os._exit(3)     # Ray's dashboard agent, as if it crashed: its raylet gives up, the node never comes up
"""


def test_a_local_ray_that_cannot_start_is_a_clear_error_and_leaves_nothing(env, tmp_path, monkeypatch):
    """A real local Ray whose dashboard agent dies at start (a sitecustomize on the caller's PYTHONPATH, which
    Ray's processes keep after nbml's folder): a clear error after Ray's own 30 s, no process of it left."""
    ray = pytest.importorskip("ray")
    (tmp_path / "sitecustomize.py").write_text(AGENT_THAT_DIES)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    files = [str(env.folder / "part0" / "00000.jpg")]
    with pytest.raises(RuntimeError, match="a local Ray could not be started") as failed:
        nbml.predict_files(env.artifact, files, tmp_path / "out.parquet", engine="ray", quiet=True)
    assert "engine='local'" in str(failed.value) and "Traceback" not in str(failed.value)
    assert not ray.is_initialized()
    assert os.environ["PYTHONPATH"] == str(tmp_path)

    def started_for_this_test(process):
        if process.pid == os.getpid():
            return False
        try:
            return str(tmp_path) in process.environ().get("PYTHONPATH", "")
        except psutil.Error:
            return False
    deadline = time.monotonic() + 30            # the agents see their raylet gone and exit within seconds
    while (left := [p for p in psutil.process_iter() if started_for_this_test(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, [p.cmdline() for p in left]


KILLED_RUN = """
import json, sys, nbml
nbml.predict_files(sys.argv[1], json.loads(open(sys.argv[2]).read()), sys.argv[3], engine="local", workers=2,
                   batch_size=16, shard_size=100, quiet=True)
"""


def test_killed_run_resumes_with_only_the_missing_shards(env, tmp_path):
    """The last file is a named pipe: the run blocks on it with every earlier shard written, and is killed there."""
    _, local = local_run(env)
    files = local["path"].tolist()[:950]
    fifo = tmp_path / "zz-pipe.png"
    os.mkfifo(fifo)
    files.append(str(fifo))
    out = tmp_path / "resumed.parquet"
    (tmp_path / "files.json").write_text(json.dumps(files))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(env.artifact), str(tmp_path / "files.json"),
                             str(out)])
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.parquet"))) < 9 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it reached the pipe"
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers
        written = {p.name: p.stat() for p in out.glob("part-*.parquet")}
        assert len(written) == 9                         # shards 0-8; shard 9 waits on the pipe
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "worker processes outlived the killed run"
    assert not (out / DONE).exists()

    fifo.unlink()
    fifo.write_bytes(b"")                           # the same list of files; the last one now readable (and empty)
    nbml.predict_files(env.artifact, files, out, engine="local", workers=2, shard_size=100, quiet=True)
    for name, before in written.items():            # shards written before the kill were not scored again
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    table = pd.read_parquet(out)
    assert table["path"].tolist() == files
    assert table["error"].iloc[-1] == "empty file (0 bytes)"
    pd.testing.assert_frame_equal(table.iloc[:950], local.iloc[:950])

    # Started again once finished: nothing to do; another list of files or shard size into the same folder: refused.
    assert nbml.predict_files(env.artifact, files, out, quiet=True) == out
    with pytest.raises(ValueError, match="another list of files"):
        nbml.predict_files(env.artifact, files[:-1], out, quiet=True)
    with pytest.raises(ValueError, match="shard_size=100"):
        nbml.predict_files(env.artifact, files, out, shard_size=50, quiet=True)


def test_a_list_with_a_folder_and_a_missing_file(env, tmp_path):
    """A list is taken as given (repeats once); one process scores in this one (workers=1)."""
    (tmp_path / "a-folder.png").mkdir()
    image = env.folder / "part0" / "00000.jpg"
    paths = [image, tmp_path / "a-folder.png", tmp_path / "gone.png", image]
    out = nbml.predict_files(env.artifact, paths, tmp_path / "list.parquet", workers=1, quiet=True)
    table = pd.read_parquet(out)
    assert table["path"].tolist() == [str(p) for p in paths[:3]]
    assert pd.isna(table["error"].iloc[0])
    assert table["error"].tolist()[1:] == ["is a folder, not a file", "file not found (deleted, or a broken link)"]
    assert table["label"].iloc[0] == env.model.predict(image).label


def test_bad_arguments_are_refused_clearly(env, tmp_path):
    with pytest.raises(ValueError, match="engine must be one of"):
        nbml.predict_files(env.artifact, env.folder, tmp_path / "o", engine="dask")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        nbml.predict_files(env.artifact, tmp_path / "empty", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nbml.predict_files(env.artifact, tmp_path / "nowhere", tmp_path / "o")
    with pytest.raises(TypeError, match=r"model.export\('my-model'\)"):
        nbml.predict_files(env.model, env.folder, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="not an exported nbml model"):
        nbml.predict_files(tmp_path / "empty", env.folder, tmp_path / "o")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="not a predict_files output"):
        nbml.predict_files(env.artifact, [env.folder / "part0" / "00000.jpg"], tmp_path / "taken")


def test_text_model_scores_txt_files(tmp_path):
    from nbml.datasets import sms_spam
    frame = sms_spam()
    labelled = frame.groupby("label").head(40)
    ds = nbml.Dataset(tmp_path / "sms.nbml")
    ds.add_texts(labelled, progress=False)
    model = nbml.train(ds, quiet=True, epochs=1, seed=0)
    artifact = model.export(tmp_path / "sms-model", quiet=True)
    ds.close()
    texts = frame.drop(labelled.index).head(30)["text"].tolist()
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    (folder / "latin-1.txt").write_bytes("café".encode("latin-1"))
    (folder / "blank.txt").write_text("  \n")
    (folder / "photo.png").write_bytes(b"not listed: a text model takes .txt files")
    table = pd.read_parquet(nbml.predict_files(artifact, folder, tmp_path / "p.parquet", workers=1, quiet=True))
    failed = table[table["error"].notna()].set_index("path")["error"]
    assert failed.to_dict() == {str(folder / "blank.txt"): "the text is empty: send some text to classify",
                                str(folder / "latin-1.txt"): "the text is not valid UTF-8 (byte 3): send UTF-8 text"}
    good = table[table["error"].isna()].reset_index(drop=True)
    assert good["path"].tolist() == [str(folder / f"{i:02d}.txt") for i in range(30)]
    want = model.predict_many(texts)
    np.testing.assert_allclose(good[model.classes].to_numpy(), want[model.classes].to_numpy(), atol=1e-4)


def test_a_retried_batch_is_written_once(tmp_path):
    """Ray may run a failed task again: rows that come back twice land in their shard once."""
    from nbml.batch_predict import _ShardWriter
    files = [f"/data/{i}.png" for i in range(5)]
    writer = _ShardWriter(tmp_path, files, 3, ["a", "b"], [0, 1])
    probs = np.tile(np.float32([[0.25, 0.75]]), (5, 1))
    writer.add(np.array([0, 1]), probs[:2], [None, None])
    writer.add(np.array([1, 3]), probs[:2], [None, None])
    writer.add(np.array([2, 4, 3]), probs[:3], [None, "empty file (0 bytes)", None])
    writer.add(np.array([0]), probs[:1], [None])
    writer.check_finished()
    table = pd.read_parquet(tmp_path)
    assert table["path"].tolist() == files
    assert table["label"].tolist()[:4] == ["b"] * 4 and pd.isna(table["label"].iloc[4])
    assert table["error"].iloc[4] == "empty file (0 bytes)"
