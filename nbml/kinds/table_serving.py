"""The server's table half: request bodies to rows, rows to the ONNX graph's inputs (nbml.kinds.table_encoding: numpy
only, no pandas, no torch).

`/predict` takes `{"row": {...}}` or `{"rows": [{...}, ...]}`; the Open Inference Protocol takes one input per
column (numbers FP64/FP32/INT64/INT32, true/false BOOL, text and dates BYTES), each of shape [N]. A row missing one of
the model's columns, with a column the project never had, or with a value of the wrong type is a 400 naming the
column; an unseen category is read as unknown; null is a missing value. The log keeps each row as JSON."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .table_encoding import ColumnError, Encoder, check_row, features
from ..serving import v2
from ..serving.app import HTTPError, json_body
from ..serving.runners import OnnxRunner

__all__ = ["Inputs", "TableOnnxRunner"]

ROW = v2.V2Input("row", "table rows", "row", None)
_NUMERIC = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
            "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}


class TableOnnxRunner(OnnxRunner):
    """Rows in, the ONNX graph's probabilities out. A batch is either rows (an object array of dicts: the warm-up,
    the bare call) encoded here, or rows the server already encoded while checking them (`Encoder.packed`, float64
    [N, width]), only split into the graph's inputs."""

    def __init__(self, folder, config: dict, threads: int | None):
        super().__init__(folder, config, threads)
        self.prep = config["prep"]
        self.encoder = Encoder(self.prep)
        self.trees = config.get("model") == "lightgbm"
        self.names = list(config["onnx"]["inputs"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        cats, conts = self.encoder(list(batch)) if batch.dtype == object else self.encoder.unpack(batch)
        feeds = {"features": features(cats, conts)} if self.trees else {"cats": cats, "conts": conts}
        return self.session.run([self.output], {k: feeds[k] for k in self.names})[0]


def _json_rows(body: bytes) -> tuple[list, bool]:
    payload = json_body(body)
    if isinstance(payload, dict) and "row" in payload:
        return [payload["row"]], True
    if isinstance(payload, dict) and "rows" in payload:
        if not isinstance(payload["rows"], list):
            raise HTTPError(400, "'rows' must be a list of objects (column: value)")
        return payload["rows"], False
    raise HTTPError(400, 'send {"row": {"column": value, ...}} or {"rows": [{...}, ...]}')


class Inputs:
    """Rows in (JSON on /predict, one input per column on the Open Inference Protocol); an object array of dicts
    to the runner; each row as JSON to the log."""
    kind = "table"
    noun = "row"
    v2 = ROW
    try_it = "-H 'Content-Type: application/json' -d '{\"row\": {...}}'"

    def __init__(self, folder, config: dict, settings):
        self.settings = settings
        self.prep = {**config["prep"], "ignored": list(config.get("ignored_columns") or [])}
        self.encoder = Encoder(config["prep"])
        cols = self.prep["conts"] + self.prep["cats"]
        self.types = {c["name"]: c["type"] for c in cols}
        self.v2_inputs = [{"name": c["name"], "datatype": {"number": "FP64", "bool": "BOOL"}.get(c["type"], "BYTES"),
                           "shape": [-1]} for c in cols]

    def make_runner(self, folder, config: dict, device: str, threads: int | None):
        return TableOnnxRunner(folder, config, threads)      # small graphs: the CPU whatever the device

    def warm_up_batch(self) -> np.ndarray:
        batch = np.empty(1, dtype=object)
        batch[0] = {}
        return batch

    def log_budget(self, log_texts: int, log_text_chars: int, **_) -> tuple[int, int]:
        return log_texts, 4 * log_text_chars

    def parse_predict(self, body: bytes, content_type: str) -> tuple[list, bool]:
        if not content_type.startswith("application/json"):
            raise HTTPError(400, 'send JSON {"row": {...}} or {"rows": [...]} with Content-Type application/json')
        return _json_rows(body)

    async def prepare(self, service, values: list) -> tuple[np.ndarray, list[None]]:
        """(the rows encoded, float64 [N, width]; no hashes yet: the log hashes each row after the answer is
        written). A bad row is a 400 that names its column: the strict encoding is the type check, done once."""
        try:
            for i, row in enumerate(values):
                check_row(row, self.prep, i, len(values))
            packed = self.encoder.packed(values, strict=True)
        except ColumnError as e:
            raise HTTPError(400, str(e)) from None
        return packed, [None] * len(values)

    def digest(self, value) -> str:
        return hashlib.sha256(self.payload(value, None)).hexdigest()

    def payload(self, value, unit) -> bytes:
        """What the log keeps of a row: its JSON (the request's row, not its encoding), cut at `log_text_chars`
        characters."""
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return text[:self.settings.log_text_chars].encode("utf-8")

    # -- the Open Inference Protocol: one input per column ------------------------------------------------------
    def parse_v2(self, body: bytes, header_length: str | None) -> v2.InferRequest:
        request, binary = v2.split_request(body, header_length)
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise v2.ProtocolError(f"the request needs 'inputs': one per column ({list(self.types)})")
        columns, offset, n = {}, 0, None
        for tensor in inputs:
            chunk, offset = v2.binary_chunk(tensor, binary, offset)
            name = tensor.get("name")
            if name not in self.types and name not in self.prep["ignored"]:
                raise v2.ProtocolError(f"unknown input {name!r}: this model takes one input per column "
                                       f"{list(self.types)}")
            if name in columns:
                raise v2.ProtocolError(f"input {name!r} is given twice")
            shape = tensor.get("shape")
            if (not isinstance(shape, list) or len(shape) not in (1, 2) or not all(isinstance(s, int) for s in shape)
                    or shape[0] < 1 or (len(shape) == 2 and shape[1] != 1)):
                raise v2.ProtocolError(f"input {name!r} must have shape [N] (one value per row), not {shape!r}")
            if n is not None and shape[0] != n:
                raise v2.ProtocolError(f"input {name!r} has {shape[0]} rows where the others have {n}")
            n = shape[0]
            columns[name] = self._values(name, tensor.get("datatype"), chunk, tensor, n)
        if offset != len(binary):
            raise v2.ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
        missing = [c for c in self.types if c not in columns]
        if missing:
            raise v2.ProtocolError(f"no input for column {missing[0]!r}: send one input per column "
                                   f"({list(self.types)}; a missing value is null in JSON)")
        rows = [{name: values[i] for name, values in columns.items()} for i in range(n)]
        return v2.InferRequest(request.get("id"), rows, v2.wanted_outputs(request))

    def _values(self, name: str, datatype, chunk, tensor: dict, n: int) -> list:
        kind = self.types.get(name, "category")
        allowed = ("BOOL",) if kind == "bool" else tuple(_NUMERIC) if kind == "number" else ("BYTES",)
        if datatype not in allowed:
            raise v2.ProtocolError(f"input {name!r} (a {kind} column) must have datatype "
                                   f"{' or '.join(allowed[:4])}{'...' if len(allowed) > 4 else ''}, not {datatype!r}")
        if chunk is not None:
            if datatype == "BYTES":
                values = [b.decode("utf-8", "replace") for b in v2.split_bytes(chunk, n, name)]
            elif datatype == "BOOL":
                values = [bool(b) for b in bytes(chunk)]
            else:
                values = np.frombuffer(bytes(chunk), _NUMERIC[datatype]).tolist()
        elif "data" in tensor:
            values = list(v2.flatten(tensor["data"]))
        else:
            raise v2.ProtocolError(f"input {name!r} has neither 'data' nor binary data")
        if len(values) != n:
            raise v2.ProtocolError(f"input {name!r} has shape [{n}] but {len(values)} values")
        return values

