"""The seam between kinds of item: the package's import graph has no cycle and its generic layers never import a
concrete kind; every kind implements `nbml.kinds.base.Kind`; and a kind registered from outside nbml (a toy one in
tests/toykind) goes through add, head training, suggest, export and serving with no edit to nbml's modules."""
from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import httpx
import numpy as np
import pytest

import nbml
from nbml import kinds
from nbml.kinds import base

ROOT = Path(__file__).resolve().parent.parent
GENERIC = ("nbml.training", "nbml.model", "nbml.embeddings", "nbml.head", "nbml.export", "nbml.analysis",
           "nbml.widgets", "nbml.serving")
ALLOWED = {"nbml.kinds", "nbml.kinds.base"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions alike."""
    files = {}
    for f in (ROOT / "nbml").rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = f

    def resolve(name: str):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: set() for m in files}
    for m, f in files.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base_name = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base_name = ".".join(up + ([base_name] if base_name else []))
                targets = [base_name] + [f"{base_name}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.startswith("nbml") else None
                if r and r != m:
                    edges[m].add(r)
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules ending where it starts), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    assert cycle(import_graph()) is None


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_generic_layers_import_no_concrete_kind():
    bad = sorted((m, t) for m, targets in import_graph().items() for t in targets
                 if m.startswith(GENERIC) and t.startswith("nbml.kinds.") and t not in ALLOWED)
    assert bad == []


def test_every_kind_implements_the_interface():
    names = base.members()
    assert {"NAME", "UNIT", "add", "plan", "onnx_graph", "card", "batch_probs"} <= set(names)
    for name in kinds.KINDS:
        module = kinds.get(name)
        assert module.NAME == name
        assert [m for m in names if not hasattr(module, m)] == []
        assert [m for m in names if m not in base.OPTIONAL and getattr(module, m) is None] == []
        assert hasattr(kinds.serving(name), "Inputs")


def test_a_module_that_is_not_a_kind_is_refused_with_what_it_lacks(monkeypatch):
    broken = types.ModuleType("broken_kind")
    broken.NAME, broken.UNIT = "broken", "things"
    monkeypatch.setitem(sys.modules, "broken_kind", broken)
    monkeypatch.setattr(kinds, "_REGISTRY", dict(kinds._REGISTRY))
    kinds.register("broken", "broken_kind", "broken_kind")
    with pytest.raises(TypeError, match=r"broken_kind is registered as the kind 'broken'.*missing \['add'"):
        kinds.get("broken")
    with pytest.raises(ValueError, match="unknown kind of item 'nope'.*nbml.kinds.register"):
        kinds.get("nope")
    with pytest.raises(ValueError, match="cannot be replaced"):
        kinds.register("text", "broken_kind", "broken_kind")


@pytest.fixture
def sequences(tmp_path, monkeypatch):
    """A project of the toy `sequence` kind, registered as a third party would."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    monkeypatch.setattr(kinds, "_REGISTRY", dict(kinds._REGISTRY))
    kinds.register("sequence", "toykind.sequence", "toykind.sequence_serving")
    rng = np.random.default_rng(0)

    def distinct(low: int, high: int, n: int, length: int = 5) -> list[list[int]]:
        seen: dict = {}
        while len(seen) < n:
            seq = [int(d) for d in rng.integers(low, high, length)]
            seen[tuple(seq)] = seq
        return list(seen.values())
    low, high = distinct(0, 4, 40), distinct(6, 10, 40)
    ds = nbml.Dataset(tmp_path / "seq.nbml")
    report = ds.add(low + high + [[12, 3]], labels=["low"] * 40 + ["high"] * 40 + ["low"], kind="sequence")
    assert len(report.added) == 80 and report.skipped[0][0] == "sequence 81"
    unlabelled = distinct(0, 10, 20, length=4)
    ds.add(unlabelled)                    # the project's kind, once it has one
    yield ds
    ds.close()


def test_a_new_kind_trains_suggests_exports_and_serves_without_editing_nbml(sequences, tmp_path):
    ds = sequences
    assert ds.kind == "sequence" and len(ds.df) == 100
    model = nbml.train(ds, mode="head", quiet=True, seed=0)
    assert model.config["kind"] == "sequence" and model.evaluate().accuracy >= 0.9
    assert model.predict([1, 0, 2]).label == "low" and model.predict("9 8 7").label == "high"
    suggested = ds.suggest(n=5)
    assert len(suggested) == 5 and set(suggested["id"]) <= set(ds.df.loc[ds.df["label"].isna(), "id"])
    assert "digit counts" in suggested.attrs.get("scored_by", "digit counts")
    folder = model.export(tmp_path / "seq-model", quiet=True)
    assert (folder / "model.onnx").is_file() and "toy classifier" in (folder / "README.md").read_text()
    loaded = nbml.load(folder)
    assert loaded.predict([9, 9]).label == "high"
    with nbml.serve(folder, port=0, log=False) as server:
        url = server.direct_url if hasattr(server, "direct_url") else server.url
        r = httpx.post(f"{url.rstrip('/')}/predict", json={"sequence": [7, 8, 9]}, timeout=30)
        assert r.status_code == 200 and r.json()["label"] == "high", r.text
        bad = httpx.post(f"{url.rstrip('/')}/predict", json={"sequence": [1, 42]}, timeout=30)
        assert bad.status_code == 400 and "digits 0-9" in bad.json()["error"]
    with pytest.raises(ValueError, match="int8 is not offered for sequences"):
        model.export(tmp_path / "int8", quantize="int8")


# `nbml serve` on a CPU machine, for each kind's artifact: at exit it prints which of the training stack's modules it
# imported (none: the server reads the artifact with the kind's serving module only).
HEAVY = ("torch", "torchvision", "fastai", "timm", "nbml.model", "nbml.widgets", "nbml.training",
         "nbml.training_loop", "nbml.embeddings", "nbml.analysis", "nbml.kinds.image", "nbml.kinds.text",
         "nbml.kinds.table")
REPORTS_HEAVY = ("import atexit, sys\n"
                 f"heavy = {HEAVY!r}\n"
                 "atexit.register(lambda: print('imported:', [m for m in heavy if sys.modules.get(m)]))\n"
                 "from nbml.cli import main\n"
                 "sys.exit(main())\n")


def serve_json(folder, bodies: list[dict], env: dict) -> tuple[list, int, str, str]:
    """`REPORTS_HEAVY serve folder` on a free port: POST each JSON body to /predict, stop with SIGTERM; (responses,
    return code, stdout, stderr)."""
    import os
    import signal
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", REPORTS_HEAVY, "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NBML_TOKEN": "", **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        responses = [httpx.post(f"{url}/predict", json=b, timeout=30) for b in bodies]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return responses, proc.returncode, out, err


def test_table_server_imports_no_training_code(tmp_path):
    """The image and text servers are checked the same way in test_serve.py and test_serve_text.py."""
    from nbml.datasets import titanic
    frame = titanic().head(200)
    ds = nbml.Dataset(tmp_path / "t.nbml")
    ds.add_table(frame, label_col="survived")
    model = nbml.train(ds, mode="head", quiet=True, seed=0)
    folder = model.export(tmp_path / "table-model", quiet=True)
    ds.close()
    rows = frame.drop(columns=["survived"]).head(2).to_dict("records")
    bodies = [{"row": {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}} for r in rows]
    responses, code, out, err = serve_json(folder, bodies, {"CUDA_VISIBLE_DEVICES": ""})
    assert code == 0, err
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert "imported: []" in out, out
