"""`model.export(dir)`: the artifact's files, the ONNX check, the round trip through nbml.load and ONNX Runtime."""
import json
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import trained_and_exported

import nbml
from nbml._imaging import open_rgb
from nbml.data import to_square
from nbml.export import ExportError, check_onnx, onnx_wrapper

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    images, ds, model, folder = trained_and_exported(root, "colour-model")
    yield SimpleNamespace(root=root, images=images, ds=ds, model=model, folder=folder)
    ds.close()


def test_artifact_files_and_config(env):
    folder, model = env.folder, env.model
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"config.json", "model.safetensors", "model.onnx", "README.md", "requirements.txt",
                     "triton/colour-model/config.pbtxt", "triton/colour-model/labels.txt",
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
    pixels = np.stack([to_square(open_rgb(p), 32) for p in paths])
    torch_probs = env.model._probs_u8(pixels)
    loaded = nbml.load(env.folder)                               # safetensors + config.json, no pickle
    assert loaded.classes == env.model.classes
    np.testing.assert_allclose(loaded._probs_u8(pixels), torch_probs, atol=1e-5)
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
    check_onnx(wrapper, env.folder / "model.onnx", 32, atol=1e-4)      # the exported graph passes
    with pytest.raises(ExportError, match="differ from torch's"):
        check_onnx(other.eval(), env.folder / "model.onnx", 32, atol=1e-4)


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
