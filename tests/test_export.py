"""`model.export(dir)`: the artifact's files, the ONNX check, the round trip through nbml.load and ONNX Runtime,
int8 quantisation kept, served, and refused."""
import contextlib
import io
import json
from types import SimpleNamespace

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import trained_and_exported

import nbml
from nbml._imaging import open_rgb
from nbml.data import to_square
from nbml.export import ExportError, QuantizationWarning, check_feeds
from nbml.kinds import image as image_kind
from nbml.kinds.image import onnx_wrapper


def _check_onnx(wrapper, path, size: int, atol: float) -> dict:
    """An image model's export check: the kind's sample images, in a batch of 1 and one of all."""
    feeds, described = image_kind.check_feeds(None, size)
    return check_feeds(wrapper, path, feeds, "probabilities", atol, described)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    # trained until every validation item is right by a wide margin, so that int8's rounding cannot flip one
    images, ds, model, folder = trained_and_exported(root, "colour-model", epochs=3, lr=1e-2)
    yield SimpleNamespace(root=root, images=images, ds=ds, model=model, folder=folder)
    ds.close()


@pytest.fixture(scope="module")
def int8(env):
    """The same model exported with quantize="int8": (folder, config, what export printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        folder = env.model.export(env.root / "colour-int8", quantize="int8")
    return SimpleNamespace(folder=folder, config=json.loads((folder / "config.json").read_text()),
                           printed=printed.getvalue())


def pixels_of(paths, size=32) -> np.ndarray:
    return np.stack([to_square(open_rgb(p), size) for p in paths])


def op_types(path) -> set:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_artifact_files_and_config(env):
    folder, model = env.folder, env.model
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"config.json", "model.safetensors", "model.onnx", "README.md", "requirements.txt",
                     "serve_config.yaml", "triton/colour-model/config.pbtxt", "triton/colour-model/labels.txt",
                     "triton/colour-model/1/model.onnx"}
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "colour-model"                     # the folder's name by default
    assert config["classes"] == model.classes == ["blue", "green", "red"]
    assert config["arch"] == "test_resnet" and config["size"] == 32 and config["format"] == "nbml-model"
    assert len(config["mean"]) == 3 and len(config["std"]) == 3 and "resize" in config["preprocessing"]
    check = config["onnx"]["check"]
    assert check["max_abs_diff"] <= check["tolerance"] == 1e-4 and check["batch_sizes"] == [1, 6]
    data = config["training_data"]
    assert data["snapshot_id"] == model.config["snapshot_id"] and data["n_items"] == 36
    assert data["class_counts"] == {"blue": 12, "green": 12, "red": 12}
    assert (folder / "triton/colour-model/1/model.onnx").read_bytes() == (folder / "model.onnx").read_bytes()


def test_model_card_and_requirements(env):
    card = (env.folder / "README.md").read_text()
    config = json.loads((env.folder / "config.json").read_text())
    assert config["snapshot_id"] in card and f"run id: {env.model.run_id}" in card
    assert "| blue |" in card and "test_resnet" in card and "## Limits" in card
    assert f"accuracy: {config['metrics']['accuracy']:.4f}" in card
    assert "Triton" in card and "decode" in card          # says what Triton needs that nbml's server does itself
    reqs = (env.folder / "requirements.txt").read_text()
    for pkg in ("onnxruntime", "numpy", "pillow", "starlette", "uvicorn", "sqlalchemy"):
        assert pkg in reqs
    active = [line for line in reqs.splitlines() if line and not line.startswith("#")]
    assert not any(name in line for line in active for name in ("torch", "fastai", "timm", "nbml"))
    assert "pip install --no-deps nbml==" in reqs and "pip install --no-deps nbml==" in card


def test_triton_repository_layout(env):
    entry = env.folder / "triton" / "colour-model"
    pbtxt = (entry / "config.pbtxt").read_text()
    assert 'name: "colour-model"' in pbtxt and 'backend: "onnxruntime"' in pbtxt
    assert 'name: "pixels"' in pbtxt and "TYPE_UINT8" in pbtxt and "dims: [ 32, 32, 3 ]" in pbtxt
    assert 'name: "probabilities"' in pbtxt and "TYPE_FP32" in pbtxt and "dims: [ 3 ]" in pbtxt
    assert "max_batch_size: 64" in pbtxt and "dynamic_batching" in pbtxt
    assert (entry / "labels.txt").read_text().split() == env.model.classes
    # the declared tensors are the ONNX graph's real ones
    session = ort.InferenceSession(str(entry / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("pixels", "tensor(uint8)", [32, 32, 3])
    assert (out.name, out.type, out.shape[1:]) == ("probabilities", "tensor(float)", [3])


def test_round_trip_torch_and_onnx_agree(env):
    paths = sorted(env.images.rglob("*.png"))[::4]
    pixels = pixels_of(paths)
    torch_probs = image_kind.probs_u8(env.model, pixels)
    loaded = nbml.load(env.folder)                               # safetensors + config.json, no pickle
    assert loaded.classes == env.model.classes
    np.testing.assert_allclose(image_kind.probs_u8(loaded, pixels), torch_probs, atol=1e-5)
    session = ort.InferenceSession(str(env.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(["probabilities"], {"pixels": pixels})[0]
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all()
    one = env.model.predict(paths[0])
    assert loaded.predict(paths[0]).label == one.label


def test_export_check_catches_a_graph_that_disagrees(env, tmp_path):
    net = env.model.net.to("cpu").eval()
    wrapper = onnx_wrapper(net, env.model.config["mean"], env.model.config["std"])
    other = onnx_wrapper(torch.nn.Sequential(net[0], torch.nn.Linear(net[1][2].in_features, 3)),
                         env.model.config["mean"], env.model.config["std"])
    _check_onnx(wrapper, env.folder / "model.onnx", 32, atol=1e-4)      # the exported graph passes
    with pytest.raises(ExportError, match="differ from torch's"):
        _check_onnx(other.eval(), env.folder / "model.onnx", 32, atol=1e-4)


def test_pickles_are_refused(env, tmp_path):
    pkl = tmp_path / "export.pkl"
    pkl.write_bytes(b"\x80\x04not a real pickle")
    with pytest.raises(ValueError, match="trust=True"):
        nbml.load(pkl)
    with pytest.raises(ValueError, match="never serves pickles"):
        nbml.serve(pkl)


def test_saved_model_must_be_exported_to_serve(env, tmp_path):
    saved = env.model.save(tmp_path / "saved")
    with pytest.raises(ValueError, match="not an exported one"):
        nbml.serve(saved)
    with pytest.raises(FileNotFoundError, match="model.export"):
        nbml.serve(tmp_path)


def test_export_name_option_and_model_without_project(env, tmp_path):
    bare = nbml.load(env.model.save(tmp_path / "saved"))      # no project, no training data in its config
    folder = bare.export(tmp_path / "x", name="My colours!")
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "My-colours"
    assert (folder / "triton" / "My-colours" / "config.pbtxt").is_file()
    assert "training_data" not in config
    assert "class counts unavailable" in (folder / "README.md").read_text()
    # an exported artifact loaded and exported again keeps what the first export knew
    again = json.loads((nbml.load(env.folder).export(tmp_path / "y") / "config.json").read_text())
    assert again["training_data"]["snapshot_id"] == env.model.config["snapshot_id"] and again["name"] == "y"


def test_int8_is_kept_when_accuracy_holds_and_both_figures_are_reported(env, int8):
    onnx_config = int8.config["onnx"]
    record = onnx_config["quantization"]
    assert onnx_config["precision"] == "int8" and record["kept"] is True
    # calibrated on every training image (fewer than the 256 cap), checked on every validation item
    assert record["calibration_items"] == 30 and record["validation_items"] == 6
    assert record["float32_accuracy"] == 1.0 and record["int8_accuracy"] == 1.0 and record["drop_points"] == 0
    assert record["max_accuracy_drop_points"] == 0.5
    figures = "validation accuracy 1.0000 int8 vs 1.0000 float32 on 6 items, a drop of 0.00 points"
    assert f"int8 kept: {figures}" in int8.printed
    card = (int8.folder / "README.md").read_text()
    assert figures in card and "`model.onnx` (int8)" in card
    # the graph really is quantised: int8 weights, quantise/dequantise pairs, and a quarter of the float's size
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(int8.folder / "model.onnx")
    assert "QuantizeLinear" not in op_types(env.folder / "model.onnx")
    weights = onnx.load(str(int8.folder / "model.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.INT8 for w in weights)
    assert (int8.folder / "model.onnx").stat().st_size < 0.4 * (env.folder / "model.onnx").stat().st_size
    assert (int8.folder / "triton/colour-int8/1/model.onnx").read_bytes() == (int8.folder / "model.onnx").read_bytes()


def test_int8_artifact_serves_unchanged_over_http(env, int8):
    paths = sorted(env.images.rglob("*.png"))
    session = ort.InferenceSession(str(int8.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    bare = session.run(["probabilities"], {"pixels": pixels_of(paths)})[0]
    with nbml.serve(int8.folder, port=0, log=False) as handle:
        with httpx.Client(base_url=handle.url) as client:
            answers = [client.post("/predict", files={"file": (p.name, p.read_bytes(), "image/png")}).json()
                       for p in paths]
            meta = client.get(f"/v2/models/{handle.name}").json()
            index = client.get("/").json()
    served = np.array([[a["probabilities"][c] for c in env.model.classes] for a in answers])
    np.testing.assert_allclose(served, bare, atol=1e-6)                   # the int8 graph, as it is
    assert [a["label"] for a in answers] == [p.parent.name for p in paths]   # and it still gets every image right
    float_probs = image_kind.probs_u8(env.model, pixels_of(paths))
    assert 0 < np.abs(served - float_probs).max() < 0.05                   # int8's rounding, and only that
    assert meta["name"] == "colour-int8" and meta["outputs"][0]["shape"] == [-1, 3]
    assert index["runner"] == "onnxruntime/cpu" and index["precision"] == "int8"


def test_int8_that_loses_accuracy_falls_back_to_float32(env, tmp_path):
    """A model with an outlier activation: one hidden unit of the head always 10,000, its outgoing weights zero (in
    float32 the model only loses that unit's small part and still gets every validation item right). int8 quantises
    the tensor on one scale, 10,000 / 255, which rounds every other unit to nothing: a known way int8 fails, and the
    accuracy check must catch it."""
    model = nbml.load(env.folder, dataset=env.ds)
    head = model.net[1]
    with torch.no_grad():
        head[4].weight[0], head[4].bias[0] = 0.0, 1e4
        head[6].weight[:, 0] = 0.0
    with pytest.warns(QuantizationWarning, match="int8 not kept, model.onnx is float32: validation accuracy") as w:
        folder = model.export(tmp_path / "outlier", quantize="int8")
    assert "max_accuracy_drop=N" in str(w[0].message)
    config = json.loads((folder / "config.json").read_text())
    record = config["onnx"]["quantization"]
    assert config["onnx"]["precision"] == "float32" and record["kept"] is False
    assert record["float32_accuracy"] == 1.0 and record["int8_accuracy"] < 0.5 and record["drop_points"] > 50
    assert "QuantizeLinear" not in op_types(folder / "model.onnx")
    assert "int8 not kept" in (folder / "README.md").read_text()
    paths = sorted(env.images.rglob("*.png"))[::3]
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["probabilities"], {"pixels": pixels_of(paths)})[0],
                               image_kind.probs_u8(model, pixels_of(paths)), atol=1e-4)


def test_int8_needs_the_project_and_a_known_setting(env, tmp_path):
    bare = nbml.load(env.model.save(tmp_path / "saved"))          # no project: nothing to calibrate on
    with pytest.warns(QuantizationWarning, match="no project to calibrate on: load it with its project"):
        folder = bare.export(tmp_path / "x", quantize="int8")
    assert json.loads((folder / "config.json").read_text())["onnx"]["precision"] == "float32"
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        env.model.export(tmp_path / "y", quantize="fp16")
    assert not (tmp_path / "y").exists()
