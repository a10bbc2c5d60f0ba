"""Real fastai training on tiny generated data, on the CPU: runs, events, stop, weights, save/load, predict."""
import json
import threading
import warnings

import numpy as np
import pytest
import torch

import nbml
from nbml import events as E
from nbml.pretrained import PretrainedWeightsWarning, create_body
from nbml.training import SCRATCH_LR

FAST = dict(arch="test_resnet", epochs=2, size=32, bs=8, lr=2e-3, pretrained=False, quiet=True, seed=0)


def test_train_records_run_and_model_works(ds, image_folder):
    seen = []
    model = nbml.train(ds, on_event=seen.append, **FAST)
    assert isinstance(model, nbml.Model) and model.classes == ["blue", "green", "red"]
    kinds = [e.kind for e in seen]
    assert kinds[0] == "train_started" and kinds[-1] == "train_ended" and "batch_ended" in kinds
    epochs = [e for e in seen if isinstance(e, E.EpochEnded)]
    assert [e.epoch for e in epochs] == [0, 1] and all(0 <= e.metrics["accuracy"] <= 1 for e in epochs)
    batches = [e for e in seen if isinstance(e, E.BatchEnded)]
    assert batches[-1].progress == pytest.approx(1.0) and all(b.lr > 0 for b in batches)

    runs = ds.runs()
    run = runs.iloc[-1]
    assert run["status"] == "completed" and run["device"] == "cpu" and run["duration_s"] > 0
    assert len(run["history"]) == 2 and run["params"]["size"] == 32 and run["params"]["weights"] == "random"
    assert set(run["versions"]) >= {"nbml", "fastai", "torch", "timm"}
    snap = ds.snapshot_items(run["snapshot_id"])
    assert len(snap) == 36 and set(snap["split"]) == {"train", "valid"}

    ev = model.evaluate()
    assert ev.n == (ds.df["split"] == "valid").sum()
    assert ev.confusion.shape == (3, 3) and ev.confusion.to_numpy().sum() == ev.n
    assert np.isclose(ev.accuracy, np.trace(ev.confusion.to_numpy()) / ev.n)
    assert list(ev.per_class.columns) == ["precision", "recall", "f1", "support"]

    losses = model.losses()
    assert len(losses) == 36 and losses["loss"].is_monotonic_decreasing
    assert list(losses.columns[:6]) == ["id", "label", "predicted", "loss", "p_label", "p_predicted"]
    assert np.allclose(losses["loss"], -np.log(losses["p_label"]), atol=1e-4)

    label, probs = model.predict(image_folder / "red" / "0.png")
    assert label in model.classes and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    many = model.predict_many([image_folder / "red" / "1.png", (image_folder / "blue" / "1.png").read_bytes()])
    assert list(many.columns) == ["label", "confidence", "blue", "green", "red"] and len(many) == 2

    # the run saved its model; load it back without pickle and get the same probabilities
    again = ds.load_run(int(run["id"]))
    assert again.predict(image_folder / "red" / "0.png").probabilities == pytest.approx(probs, abs=1e-5)


def test_learns_the_colours(ds):
    model = nbml.train(ds, **{**FAST, "epochs": 15, "lr": 1e-2})
    assert model.evaluate().accuracy >= 0.8


def test_default_schedule_from_scratch(ds):
    seen = []
    model = nbml.train(ds, arch="test_resnet", epochs=1, size=32, pretrained=False, quiet=True, seed=0,
                       on_event=seen.append)
    params = ds.runs().iloc[-1]["params"]
    assert params["lr"] == SCRATCH_LR             # no lr_find on an untrained network
    assert params["freeze_epochs"] == 0          # no frozen phase for a random body
    assert [e.phase for e in seen if isinstance(e, E.PhaseStarted)] == ["unfrozen"]
    assert model.run_id == ds.runs().iloc[-1]["id"]


def test_lr_find_on_the_full_network_when_asked_for_no_frozen_phase(ds, tmp_path):
    # pretrained weights (a file) with freeze_epochs=0: the search runs on the whole network, about an epoch long
    import timm
    from safetensors.torch import save_file
    source = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    seen = []
    nbml.train(ds, arch="test_resnet", epochs=1, size=32, weights=tmp_path / "w.safetensors", freeze_epochs=0,
               quiet=True, save=False, on_event=seen.append)
    params = ds.runs().iloc[-1]["params"]
    found = [e for e in seen if isinstance(e, E.LearningRateFound)]
    assert len(found) == 1 and params["lr"] == found[0].lr and 1e-7 < params["lr"] < 10
    assert [e.phase for e in seen if isinstance(e, E.PhaseStarted)] == ["lr_find", "unfrozen"]


def test_save_and_load_round_trip(ds, tmp_path, image_folder):
    model = nbml.train(ds, **FAST)
    folder = model.save(tmp_path / "exported")
    assert (folder / "model.safetensors").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["classes"] == model.classes and config["arch"] == "test_resnet"
    loaded = nbml.load(folder)
    img = image_folder / "green" / "3.png"
    assert loaded.predict(img).probabilities == pytest.approx(model.predict(img).probabilities, abs=1e-5)
    pkl = tmp_path / "export.pkl"
    pkl.write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="trust=True"):
        nbml.load(pkl)
    with pytest.raises(FileNotFoundError, match="config.json"):
        nbml.load(tmp_path)


def test_offline_weights_warning_once(ds):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nbml.train(ds, **{**FAST, "pretrained": "auto", "epochs": 1})
    ours = [w for w in caught if issubclass(w.category, PretrainedWeightsWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert "random initialisation" in text and "weights=" in text
    with pytest.raises(RuntimeError, match="weights="):
        create_body("test_resnet", pretrained=True)


def test_local_weights_file(tmp_path, ds):
    import timm
    from safetensors.torch import save_file
    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    first = next(iter(source.parameters()))
    torch.nn.init.normal_(first, 0, 0.5)
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    body, where = create_body("test_resnet", weights=path)
    assert where == f"file:{path.resolve()}"
    assert torch.equal(next(iter(body.parameters())), first) and body.num_classes == 0
    # weights for another architecture are refused with a clear message
    other = tmp_path / "vit.safetensors"
    vit = timm.create_model("test_vit", pretrained=False)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(other))
    with pytest.raises(ValueError, match="does not look like weights"):
        create_body("test_resnet", weights=other)
    # a pretrained body gets the frozen phase first
    nbml.train(ds, **{**FAST, "pretrained": "auto", "epochs": 1}, weights=path)
    params = ds.runs().iloc[-1]["params"]
    assert params["weights"].startswith("file:") and params["freeze_epochs"] == 1
    assert [h["phase"] for h in ds.runs().iloc[-1]["history"]] == ["frozen", "unfrozen"]


def test_stop_handle_keeps_best_epoch(ds):
    epoch_done = threading.Event()
    handle = nbml.train(ds, **{**FAST, "epochs": 200}, background=True,
                        on_event=lambda e: isinstance(e, E.EpochEnded) and e.epoch >= 1 and epoch_done.set())
    assert isinstance(handle, nbml.TrainingHandle)
    assert epoch_done.wait(120), "training never finished an epoch"
    handle.stop()
    model = handle.wait(60)
    assert handle.status == "stopped" and handle.done
    run = ds.runs().iloc[-1]
    assert run["status"] == "stopped" and 2 <= len(run["history"]) < 200
    end = handle.events[-1]
    assert isinstance(end, E.TrainEnded) and end.best_epoch is not None
    best = min(run["history"], key=lambda h: h["valid_loss"])
    assert end.best_epoch == best["epoch"] and run["metrics"]["valid_loss"] == pytest.approx(best["valid_loss"])
    # the returned weights are the best epoch's: its validation loss is reproduced
    assert model.evaluate().n > 0


def test_bad_item_after_import_is_skipped_with_warning(ds):
    victim = ds.df.iloc[0]
    import os
    os.remove(victim["path"])
    changed = ds.df.iloc[1]
    with open(changed["path"], "ab") as f:
        f.write(b"extra")
    seen = []
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        nbml.train(ds, on_event=seen.append, **{**FAST, "epochs": 1})
    notes = " ".join(e.message for e in seen if isinstance(e, E.TrainWarning))
    assert f"item {victim['id']} skipped" in notes and "no longer exists" in notes
    assert f"item {changed['id']} skipped" in notes and "changed since" in notes


def test_clear_errors(tmp_path, image_folder):
    ds = nbml.Dataset(tmp_path / "p.nbml")
    with pytest.raises(ValueError, match="no labelled items"):
        nbml.train(ds, **FAST)
    report = ds.add_images(image_folder / "red")       # files at the top of the folder come in unlabelled
    with pytest.raises(ValueError, match="no labelled items"):
        nbml.train(ds, **FAST)
    ds.set_label(report.added, "red")
    with pytest.raises(ValueError, match="at least two classes"):
        nbml.train(ds, **FAST)
    with pytest.raises(TypeError, match="nbml.Dataset"):
        nbml.train("not a dataset")
    with pytest.raises(ValueError, match="unknown backbone"):
        create_body("resnet_does_not_exist")


def test_backbones_table():
    table = nbml.backbones()
    assert {"arch", "tier", "input_size", "pretraining", "licence"} <= set(table.columns)
    import timm
    assert all(timm.is_model(a) for a in table["arch"])


CACHE_CHECK = """
import sys, torch, nbml
from nbml.pretrained import create_body
from safetensors.torch import load_file
body, where = create_body("test_resnet", pretrained=True)
saved = load_file(sys.argv[1])
name, value = next((k, v) for k, v in body.state_dict().items() if k in saved)
print(where, torch.equal(value, saved[name]))
"""


def test_pretrained_weights_from_huggingface_cache(tmp_path):
    """Offline, weights already in the huggingface cache are used (no network, no warning)."""
    import os
    import subprocess
    import sys
    import timm
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg
    repo = get_pretrained_cfg("test_resnet").hf_hub_id
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    model = timm.create_model("test_resnet", pretrained=False)
    torch.nn.init.normal_(next(iter(model.parameters())), 0, 0.3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", CACHE_CHECK,
                          str(snapshot / "model.safetensors")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["timm:test_resnet", "True"]


def test_hardware_report_measures_each_backbone(ds):
    # a budget no machine can exhaust: every backbone gets measured, however slow this machine is
    table = nbml.hardware_report(ds, archs=["test_resnet", "test_vit"], budget_s=1e6, verbose=False)
    assert list(table["arch"]) == ["test_resnet", "test_vit"]
    assert (table["train_img_s"] > 0).all() and (table["infer_img_s"] > 0).all()
    n = len(ds.df)
    assert table["epoch_s"].iloc[0] == pytest.approx(n / table["train_img_s"].iloc[0], rel=0.01)
    assert table.attrs["size"] == 64 and table.attrs["items"] == n


def test_hardware_report_skips_past_the_budget_but_measures_the_first(ds):
    table = nbml.hardware_report(ds, archs=["test_resnet", "test_vit"], budget_s=0, verbose=False)
    assert table["train_img_s"].iloc[0] > 0
    assert table["error"].iloc[1].startswith("skipped: over the")


def test_same_seed_same_run(ds):
    """seed= makes a run repeatable: building the loaders must not re-seed torch's global generator."""
    losses = []
    for _ in range(2):
        nbml.train(ds, **FAST)
        losses.append([h["train_loss"] for h in ds.runs().iloc[-1]["history"]])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


TRAIN_AND_LIST_WARNINGS = """
import sys, warnings
warnings.simplefilter("always")
import nbml
ds = nbml.Dataset(sys.argv[1])
ds.add_images(sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = nbml.train(ds, arch="test_resnet", epochs=1, size=32, bs=8, pretrained=False, quiet=True, seed=0)
    model.evaluate()
for w in caught:
    print(f"{w.category.__name__}|{w.filename}|{str(w.message)[:100]}")
"""


def test_training_shows_no_third_party_warnings(tmp_path, image_folder):
    """A fresh process (fastai not yet imported) trains: the known import-time warnings of fastai, torch and pandas
    (torch.jit.script, pandas options) do not reach the user; nbml's own would."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", TRAIN_AND_LIST_WARNINGS, str(tmp_path / "p.nbml"),
                          str(image_folder)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    foreign = [line for line in out.stdout.splitlines() if "site-packages" in line]
    assert foreign == []
