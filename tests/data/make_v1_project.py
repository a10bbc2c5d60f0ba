"""Writes v1-project.nbml with nbml at commit ef5c314 (schema 1), for the upgrade test."""
import json
from pathlib import Path
import numpy as np
from PIL import Image
import nbml
root = Path("/tmp/legacy")
img, new = root / "images", root / "unlabelled"
for name, rgb in {"red": (200, 30, 30), "blue": (30, 30, 200)}.items():
    (img / name).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray((np.full((8, 8, 3), rgb) + i).astype(np.uint8)).save(img / name / f"{i}.png")
new.mkdir(exist_ok=True)
for i in range(2):
    Image.fromarray((np.full((8, 8, 3), (30, 200, 30)) + i).astype(np.uint8)).save(new / f"{i}.png")
ds = nbml.Dataset(root / "v1-project.nbml")
ds.add_images(img)                       # 6 labelled (import), ids 1-6
ds.add_images(new, label_from=None)      # 2 unlabelled, ids 7-8
ds.set_label(7, "green")                 # human label, adds a class
ds.set_label(1, "red")                   # relabel
ds.set_label(2, "red"); ds.undo()         # an undone action
ds.assign_validation_split(0.34, seed=0)
snap = ds.snapshot(ds.training_items())
run = ds._start_run("test_resnet", {"epochs": 1}, snap, "cpu", {"nbml": nbml.__version__})
ds._update_run(run, status="completed", metrics={"accuracy": 0.5}, history=[{"epoch": 0, "valid_loss": 1.0}],
               duration_s=1.0)
print(ds, ds.df[["id", "label", "split", "label_source"]].to_string(), ds.history().to_string(), sep="\n")
ds.close()
