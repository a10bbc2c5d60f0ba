"""int8 for `model.export(dir, quantize="int8")`: ONNX Runtime static quantisation of the exported float32 graph,
calibrated on the project's own training images, kept only when its accuracy on the validation items stays within
`max_accuracy_drop` points of the float32 graph's. The outcome (both accuracies, whether int8 was kept and why) is a
plain dict that export writes into config.json and the model card.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

__all__ = ["quantize_checked", "describe"]

METHOD = ("ONNX Runtime static quantisation: QDQ, int8 weights per channel (7-bit range: no overflow on CPUs "
          "without VNNI), uint8 activations, min-max calibration")


class _Batches(CalibrationDataReader):
    """Cached uint8 images, a batch at a time, as the graph's input."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, input_name: str, bs: int = 16):
        self.array, self.rows, self.input, self.bs, self.pos = array, rows, input_name, bs, 0

    def get_next(self) -> dict | None:
        if self.pos >= len(self.rows):
            return None
        batch = np.ascontiguousarray(self.array[self.rows[self.pos:self.pos + self.bs]])
        self.pos += self.bs
        return {self.input: batch}

    def rewind(self) -> None:
        self.pos = 0


def _cached_items(model, split: str, limit: int | None = None, seed: int = 0):
    """(cache array, cache rows, class indices) of the usable labelled items of a split whose class the model knows;
    at most `limit` of them, drawn with a fixed seed."""
    from .data import ImageCache, check_files
    frame = model.dataset.training_items([split])
    frame = frame[frame["label"].isin(model.classes)]
    if limit is not None and len(frame) > limit:
        frame = frame.sample(limit, random_state=seed).sort_values("id")
    frame, _ = check_files(frame.reset_index(drop=True))
    array, rows, kept, _ = ImageCache(model.dataset, model.size).rows(frame)
    index = {c: i for i, c in enumerate(model.classes)}
    return array, rows, frame["label"].iloc[kept].map(index).to_numpy(np.int64)


def _accuracy(path: Path, input_name: str, array: np.ndarray, rows: np.ndarray, targets: np.ndarray,
              bs: int = 64) -> float:
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hits = 0
    for i in range(0, len(rows), bs):
        probs = session.run(None, {input_name: np.ascontiguousarray(array[rows[i:i + bs]])})[0]
        hits += int((probs.argmax(1) == targets[i:i + bs]).sum())
    return hits / len(rows)


class _DropQuantizerLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_quantizer():
    """ONNX Runtime's quantiser logs notes about the head's shapes to the root logger: keep them out of the cell."""
    root, quiet = logging.getLogger(), _DropQuantizerLogs()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _quantize(src: Path, dst: Path, calibration: _Batches) -> None:
    with _quiet_quantizer():
        quantize_static(str(src), str(dst), calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def quantize_checked(model, float_onnx: Path, int8_onnx: Path, input_name: str, *, calibration_items: int,
                     max_accuracy_drop: float, seed: int = 0) -> dict:
    """Write `int8_onnx` from `float_onnx` and compare both on the validation items; the record says whether the
    int8 graph is to be kept. Nothing is kept when there is no project, no training image or no validation item."""
    record = {"requested": "int8", "kept": False, "method": METHOD, "max_accuracy_drop_points": max_accuracy_drop}
    if model.dataset is None:
        return {**record, "reason": "the model has no project to calibrate on: load it with its project "
                                    "(nbml.load(folder, dataset=ds)) or export the model nbml.train returned"}
    array, rows, _ = _cached_items(model, "train", calibration_items, seed)
    if not len(rows):
        return {**record, "reason": "the project has no readable labelled training image to calibrate on"}
    valid = _cached_items(model, "valid")
    if not len(valid[1]):
        return {**record, "reason": "the project has no readable labelled validation item to check int8's "
                                    "accuracy on (ds.assign_validation_split() makes some)"}
    _quantize(float_onnx, int8_onnx, _Batches(array, rows, input_name))
    float_acc = _accuracy(float_onnx, input_name, *valid)
    int8_acc = _accuracy(int8_onnx, input_name, *valid)
    drop = round((float_acc - int8_acc) * 100, 4)
    record.update(calibration_items=int(len(rows)), validation_items=int(len(valid[1])),
                  float32_accuracy=float_acc, int8_accuracy=int8_acc, drop_points=drop,
                  kept=drop <= max_accuracy_drop)
    if not record["kept"]:
        record["reason"] = f"int8 lost {drop:.2f} accuracy points, more than the {max_accuracy_drop:g} allowed"
    return record


def describe(record: dict) -> str:
    """One or two sentences on the outcome, for the export's message and the model card."""
    verdict = "int8 kept" if record["kept"] else "int8 not kept, model.onnx is float32"
    if "int8_accuracy" not in record:
        return f"{verdict}: {record['reason']}."
    drop = record["drop_points"]
    figures = (f"validation accuracy {record['int8_accuracy']:.4f} int8 vs {record['float32_accuracy']:.4f} float32 "
               f"on {record['validation_items']} items, a {'drop' if drop >= 0 else 'gain'} of {abs(drop):.2f} points "
               f"where a drop of at most {record['max_accuracy_drop_points']:g} is allowed"
               + (f" (calibrated on {record['calibration_items']} training images)"
                  if record.get("calibration_items") else ""))
    if record["kept"]:
        return f"{verdict}: {figures}."
    return (f"{verdict}: {figures}. The float32 model predicts as trained, only slower; "
            f"export(..., quantize='int8', max_accuracy_drop=N) accepts a drop of up to N points.")
