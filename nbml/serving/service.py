"""An exported model loaded for serving, without the HTTP socket: the artifact read and checked, the kind's serving
half, the runner and the prediction log (`open_service`). Shared by the one-process server (nbml.serving.server),
the Ray Serve replicas (nbml.serving.ray_engine) and batch prediction (nbml.batch_predict)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .app import Service, Settings, inputs_for

__all__ = ["read_artifact", "open_service"]


def read_artifact(folder) -> tuple[Path, dict]:
    """(the folder, its config.json) of an exported model; a clear error for a pickle, a folder without config.json,
    or a saved model that was never exported."""
    folder = Path(os.fspath(folder)).expanduser().resolve()
    if folder.suffix == ".pkl":
        raise ValueError(f"{folder} is a pickle; nbml never serves pickles. Load the model from its nbml folder and "
                         f"export it: nbml.load(folder).export('my-model')")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} is not an exported nbml model (no config.json): write one with "
                                f"model.export('{folder.name}')")
    config = json.loads(config_file.read_text())
    if config.get("format") != "nbml-model":
        raise ValueError(f"{config_file} is not an nbml model config (format {config.get('format')!r})")
    if "onnx" not in config:
        raise ValueError(f"{folder} holds a saved model but not an exported one (no ONNX graph): run "
                         f"nbml.load('{folder}').export('{folder}') first")
    return folder, config


def open_service(folder, *, dataset=None, device: str = "auto", threads: int | None = None, log=True,
                 log_images: int = 0, log_image_bytes: int = 2_000_000, log_images_below: float = 1.01,
                 log_texts: int = 10_000, flush_s: float = 1.0, **settings) -> Service:
    """Load the artifact, pick the runner, open the prediction log: everything but the HTTP socket."""
    from ..predlog import LOG_FILE, PredictionLog
    folder, config = read_artifact(folder)
    settings = Settings(**settings)
    inputs = inputs_for(folder, config, settings)      # the kind's half: images or texts
    runner = inputs.make_runner(folder, config, device, threads)
    prediction_log = None
    if log:
        target = dataset if dataset is not None else (Path(log) if isinstance(log, (str, os.PathLike))
                                                      else folder / LOG_FILE)
        keep, largest = inputs.log_budget(log_images=log_images, log_image_bytes=log_image_bytes,
                                          log_texts=log_texts, log_text_chars=settings.log_text_chars)
        prediction_log = PredictionLog(target, model=config["name"], log_images=keep, max_image_bytes=largest,
                                       images_below=log_images_below, flush_s=flush_s)
    service = Service(folder, config, runner, settings, prediction_log, inputs)
    service.warm_up()
    return service
