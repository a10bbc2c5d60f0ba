"""The server's half of the toy `sequence` kind: `{"sequence": [digits]}` to features, the ONNX graph."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from nbml.serving import v2
from nbml.serving.app import HTTPError, json_body
from nbml.serving.runners import OnnxRunner

from .sequence import features, parse


class Inputs:
    kind = noun = "sequence"
    v2 = v2.V2Input("sequence", "digit sequences", "sequence", None)
    try_it = "-H 'Content-Type: application/json' -d '{\"sequence\": [1, 2, 3]}'"

    def __init__(self, folder, config: dict, settings):
        self.settings = settings

    def make_runner(self, folder, config: dict, device: str, threads: int | None):
        return OnnxRunner(folder, config, threads)

    def warm_up_batch(self) -> np.ndarray:
        return features([[1]])

    def log_budget(self, log_texts: int, log_text_chars: int, **_) -> tuple[int, int]:
        return log_texts, log_text_chars

    def parse_predict(self, body: bytes, content_type: str):
        data = json_body(body)
        if not isinstance(data, dict) or "sequence" not in data:
            raise HTTPError(400, 'send {"sequence": [digits]}')
        return [data["sequence"]], True      # (values, a single value: answer it alone, not in a list)

    async def prepare(self, service, values: list):
        try:
            return features([parse(v) for v in values]), [None] * len(values)
        except (ValueError, TypeError) as e:
            raise HTTPError(400, str(e)) from None

    def digest(self, value) -> str:
        return hashlib.sha256(self.payload(value, None)).hexdigest()

    def payload(self, value, unit) -> bytes:
        return " ".join(map(str, value)).encode()

    def parse_v2(self, body: bytes, header_length):
        raise v2.ProtocolError("the toy sequence kind takes /predict only")
