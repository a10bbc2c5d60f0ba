"""nbml.train(ds, devices=2): two real worker processes under torchrun on the CPU (gloo), tiny generated images.

Each distributed run costs a torchrun start and two fastai imports: three runs here."""
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import nbml
from nbml import events as E
from nbml.data import BatchLoader, ItemBatches, TensorLoader
from nbml.distributed import world_size

FAST = dict(arch="test_resnet", size=32, bs=8, pretrained=False, quiet=True, seed=0, devices=2)


def run_folder(ds, run_id):
    return ds.home / "distributed" / f"run-{run_id}"


def worker_pids(folder):
    return [int(p.read_text()) for p in sorted(folder.glob("pid-*"))]


def alive(pid):
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return ") Z " not in stat


def assert_all_gone(folder, timeout=60):
    pids = worker_pids(folder)
    assert len(pids) == 2
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), f"worker processes left behind: {pids}"


def test_two_processes_train_stop_record_and_predict(ds, tmp_path, image_folder):
    # pretrained weights from a file: lr_find on each rank (rank 0's losses decide), the frozen head phase on
    # cached features, then the whole network, every fit under DDP with a shard of each epoch per rank; stopped
    # during the unfrozen phase
    import timm
    from safetensors.torch import save_file
    source = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    seen, unfrozen = [], threading.Event()

    def on_event(e):
        seen.append(e)
        if isinstance(e, E.EpochEnded) and e.phase == "unfrozen" and e.epoch >= 2:
            unfrozen.set()
    handle = nbml.train(ds, **{**FAST, "pretrained": "auto"}, epochs=200, weights=tmp_path / "w.safetensors",
                        background=True, on_event=on_event)
    assert unfrozen.wait(300), "no unfrozen epoch ended"
    handle.stop()
    model = handle.wait(120)       # a rank that missed Stop would hang the other in its next all-reduce
    assert handle.status == "stopped"
    kinds = [e.kind for e in seen]
    assert kinds[0] == "train_started" and kinds[-1] == "train_ended" and "batch_ended" in kinds
    assert seen[0].device == "cpu x2"
    assert [e.phase for e in seen if isinstance(e, E.PhaseStarted)] == ["lr_find", "frozen", "unfrozen"]
    # 30 train items: each rank's epoch is 15 of them, one full batch of 8 (one process would take three)
    assert {e.n_batches for e in seen if isinstance(e, E.BatchEnded)} == {1}
    found = [e.lr for e in seen if isinstance(e, E.LearningRateFound)]

    run = ds.runs().iloc[-1]
    assert run["status"] == "stopped" and run["device"] == "cpu x2" and run["error"] is None
    assert run["params"]["world_size"] == 2 and run["params"]["lr"] == pytest.approx(found[0])
    assert run["history"][0]["phase"] == "frozen" and 3 <= len(run["history"]) < 201
    best = min(run["history"], key=lambda h: h["valid_loss"])
    assert seen[-1].best_epoch == best["epoch"] and seen[-1].run_id == model.run_id == run["id"]
    assert run["metrics"]["valid_loss"] == pytest.approx(best["valid_loss"])

    # the same artifact as a one-process run: nbml.load reads it and predicts as the returned model does
    img = image_folder / "red" / "0.png"
    label, probs = model.predict(img)
    assert label in model.classes and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    again = nbml.load(run["model_path"])
    assert again.predict(img).probabilities == pytest.approx(probs, abs=1e-5)
    assert model.evaluate().n == (ds.df["split"] == "valid").sum()
    assert_all_gone(run_folder(ds, run["id"]))


def test_a_worker_that_dies_fails_the_run_clearly(ds):
    epoch_done = threading.Event()
    handle = nbml.train(ds, **FAST, epochs=200, lr=2e-3, background=True,
                        on_event=lambda e: isinstance(e, E.EpochEnded) and epoch_done.set())
    assert epoch_done.wait(240), "no epoch ended"
    folder = run_folder(ds, handle.run_id)
    os.kill(int((folder / "pid-1").read_text()), signal.SIGKILL)     # as the kernel's OOM killer would
    with pytest.raises(nbml.DistributedTrainingError, match=r"worker 1 of 2 was killed by SIGKILL"):
        handle.wait(120)
    assert handle.status == "failed"
    end = handle.events[-1]
    assert isinstance(end, E.TrainEnded) and end.status == "failed" and "worker 1 of 2" in end.error
    run = ds.runs().iloc[-1]
    assert run["status"] == "failed" and "worker 1 of 2 was killed by SIGKILL" in run["error"]
    assert_all_gone(folder, timeout=5)


KERNEL = """
import sys, threading
import nbml
from nbml import events as E
ds = nbml.Dataset(sys.argv[1])
epoch = threading.Event()
handle = nbml.train(ds, arch="test_resnet", size=32, bs=8, pretrained=False, quiet=True, seed=0, devices=2,
                    epochs=200, lr=2e-3, background=True,
                    on_event=lambda e: isinstance(e, E.EpochEnded) and epoch.set())
epoch.wait(240)
print(handle.run_id, flush=True)
handle.wait()
"""


def test_workers_end_with_the_kernel_that_started_them(ds, tmp_path):
    import subprocess
    import sys
    (tmp_path / "kernel.py").write_text(KERNEL)
    kernel = subprocess.Popen([sys.executable, str(tmp_path / "kernel.py"), str(ds.path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        run_id = int(kernel.stdout.readline())
    finally:
        kernel.kill()          # as a kernel restart or a crash would: no atexit, no clean-up in the kernel
        kernel.wait()
    folder = run_folder(ds, run_id)
    torchrun = int((folder / "torchrun.pid").read_text())
    assert_all_gone(folder, timeout=30)
    end = time.monotonic() + 30
    while time.monotonic() < end and alive(torchrun):
        time.sleep(0.1)
    assert not alive(torchrun)
    run = ds.runs().iloc[-1]
    # the rank that notices the kernel gone records it; the other may first fail on the lost connection (torchrun
    # ends it before it can say more), and either record may be the last one written
    assert run["status"] == "failed" and ("kernel" in run["error"] or "gloo" in run["error"]), run["error"]


def shard_items(make):
    """The items each of two ranks takes in one epoch of loaders made alike (same seed)."""
    return [np.concatenate([y.numpy() for *_, y in make((rank, 2))]) for rank in (0, 1)]


@pytest.mark.parametrize("loader", ["images", "items", "tensors"])
def test_each_rank_takes_a_disjoint_shard_of_every_epoch(loader):
    n = 23     # odd: one item is repeated to give both ranks as many batches
    def make(shard):
        if loader == "images":
            images = np.zeros((n, 4, 4, 3), np.uint8)
            dl = BatchLoader(images, np.arange(n), np.arange(n), 4, mean=(0, 0, 0), std=(1, 1, 1), device="cpu",
                             shuffle=True, seed=7)
        elif loader == "items":
            dl = ItemBatches(lambda idx: [np.zeros((len(idx), 2))], np.arange(n), 4, "cpu", shuffle=True, seed=7)
        else:
            dl = TensorLoader(torch.zeros(n, 2), torch.arange(n), 4, shuffle=True, seed=7)
        dl.shard = shard
        assert len(dl) == 3
        return dl
    first, second = shard_items(make)
    assert len(first) == len(second) == 12
    assert set(first) | set(second) == set(range(n)) and len(set(first) & set(second)) == 1


def test_devices_argument_is_checked(ds):
    with pytest.raises(ValueError, match="has none"):
        world_size("all", "cpu")
    with pytest.raises(ValueError, match="number of processes"):
        world_size(0, "cpu")
    assert world_size(3, "cpu") == (3, "cpu")
    with pytest.raises(ValueError, match="devices= is for mode='finetune'"):
        nbml.train(ds, mode="head", devices=2)
    with pytest.raises(ValueError, match="less than one batch"):
        nbml.train(ds, **{**FAST, "bs": 16}, epochs=1)      # 30 items: 15 a rank, and drop_last
    assert ds.runs().empty
