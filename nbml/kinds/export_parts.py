"""What the kinds' export halves share: the validation items an exported graph is checked on, and Triton's entry for
a graph of encoded arrays. Below the kinds; nbml.export (the generic half) never needs these."""
from __future__ import annotations

import numpy as np

from .base import ONNX_OUTPUT

__all__ = ["validation_sample", "triton_arrays_config"]


def validation_sample(model, limit: int, usable) -> list:
    """What the export check runs on: `usable(frame)` of the project's validation items (a list), at most `limit`
    of them (a fixed sample); empty without a project or validation items."""
    if model.dataset is None:
        return []
    try:
        frame = model.dataset.training_items(["valid"])
    except Exception:
        return []
    values = usable(frame) if len(frame) else []
    if len(values) > limit:
        values = [values[i] for i in np.random.default_rng(0).choice(len(values), limit, replace=False)]
    return values


def triton_arrays_config(config: dict, inputs: list[tuple[str, str]], output: str = ONNX_OUTPUT,
                         max_batch: int = 64) -> dict[str, str]:
    """Triton's entry for a graph that takes encoded arrays of one variable dimension (texts, table rows): `inputs`
    are (name, Triton data type); a front end (the client, or a Python-backend model in an ensemble) encodes."""
    blocks = [f"""  {{
    name: "{n}"
    data_type: {t}
    dims: [ -1 ]
  }}""" for n, t in inputs]
    nl = "\n"
    pbtxt = f"""name: "{config['name']}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
{("," + nl).join(blocks)}
]
output [
  {{
    name: "{output}"
    data_type: TYPE_FP32
    dims: [ {len(config['classes'])} ]
    label_filename: "labels.txt"
  }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""
    return {"config.pbtxt": pbtxt, "labels.txt": "\n".join(config["classes"]) + "\n"}
