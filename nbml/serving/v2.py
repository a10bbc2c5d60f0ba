"""The Open Inference Protocol (KServe v2) for a classifier of images or texts: parse infer requests, build responses.

Requests: JSON, optionally followed by binary tensor data (Triton's binary tensor extension: the
`Inference-Header-Content-Length` header gives the JSON's length; each input with a `binary_data_size` parameter
takes that many bytes, in input order). BYTES elements in binary data are a 4-byte little-endian length then the
bytes; in JSON, BYTES elements of the `image` input are base64 strings (an encoded image is not UTF-8 text), those
of the `text` input plain strings. The model's one input is described by a `V2Input` (`IMAGE` or `TEXT`).

Responses: JSON, and binary data for the outputs that ask for it (`binary_data` output parameter, or the request's
`binary_data_output` parameter, which is what tritonclient sends when no outputs are listed).
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["ProtocolError", "InferRequest", "parse_infer_request", "encode_infer_response", "model_metadata",
           "INPUT", "OUTPUTS", "V2Input", "IMAGE", "TEXT", "split_request", "binary_chunk", "wanted_outputs",
           "split_bytes", "flatten"]

INPUT = "image"
OUTPUTS = ("probabilities", "label")


class ProtocolError(ValueError):
    """A request that does not follow the protocol or the model's metadata: 400 with this message."""


@dataclass(frozen=True)
class V2Input:
    """The model's one BYTES input: its name, what its elements are (for messages), and how a JSON element becomes
    bytes (`from_json(value, i, name)`; binary elements are taken as they come)."""
    name: str
    elements: str                        # "encoded image files"
    element: str                         # "encoded image"
    from_json: Callable


def _json_text(value, i: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"element {i} of input '{name}' must be a string, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")     # lone surrogates fail later, as text that is not UTF-8


class InferRequest:
    def __init__(self, id, images: list[bytes], outputs: list[tuple[str, bool]]):
        self.id, self.images, self.outputs = id, images, outputs


def split_bytes(buffer: memoryview, count: int, name: str = INPUT) -> list[bytes]:
    out, offset = [], 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise ProtocolError("binary BYTES data is cut inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + n > len(buffer):
            raise ProtocolError("binary BYTES data is shorter than an element's length says")
        out.append(bytes(buffer[offset:offset + n]))
        offset += n
    if len(out) != count:
        raise ProtocolError(f"input '{name}' has shape [{count}] but its binary data holds {len(out)} elements")
    return out


def flatten(data):
    if isinstance(data, list):
        for x in data:
            yield from flatten(x)
    else:
        yield data


def _b64(value, i: int, INPUT: str = INPUT) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"element {i} of input '{INPUT}' must be a base64 string in JSON, not "
                            f"{type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"element {i} of input '{INPUT}' is not valid base64 (send encoded images base64 in "
                            f"JSON, or as binary data)") from None


def split_request(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """(the request's JSON, the binary data after it)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length must be an integer, not {header_length!r}") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"the request is not valid JSON: {e}") from None
    if not isinstance(request, dict):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    return request, binary


def binary_chunk(tensor, binary: memoryview, offset: int) -> tuple[memoryview | None, int]:
    """(this input's binary data or None, the offset after it)."""
    if not isinstance(tensor, dict):
        raise ProtocolError("each input must be a JSON object with name, shape, datatype and data")
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None and (not isinstance(size, int) or size < 0 or offset + size > len(binary)):
        raise ProtocolError(f"input {tensor.get('name')!r}: binary_data_size {size!r} does not fit the "
                            f"{len(binary) - offset} bytes of binary data left")
    return (binary[offset:offset + size] if size is not None else None), offset + (size or 0)


def parse_infer_request(body: bytes, header_length: str | None, spec: V2Input | None = None) -> InferRequest:
    spec = spec or IMAGE
    INPUT = spec.name
    request, binary = split_request(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(f"the request needs 'inputs': a list with one input named '{INPUT}'")

    images, offset = None, 0
    for tensor in inputs:
        chunk, offset = binary_chunk(tensor, binary, offset)
        if tensor.get("name") != INPUT:
            raise ProtocolError(f"unknown input {tensor.get('name')!r}: this model takes one input '{INPUT}' "
                                f"(BYTES, shape [-1], {spec.elements})")
        if images is not None:
            raise ProtocolError(f"input '{INPUT}' is given twice")
        if tensor.get("datatype") != "BYTES":
            raise ProtocolError(f"input '{INPUT}' must have datatype BYTES ({spec.elements}), not "
                                f"{tensor.get('datatype')!r}")
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int)
                or isinstance(shape[0], bool) or shape[0] < 1):
            raise ProtocolError(f"input '{INPUT}' must have shape [N] with N >= 1 (one {spec.element} per element), "
                                f"not {shape!r}")
        count = shape[0]
        if chunk is not None:
            images = split_bytes(chunk, count, INPUT)
        elif "data" in tensor:
            values = list(flatten(tensor["data"]))
            if len(values) != count:
                raise ProtocolError(f"input '{INPUT}' has shape [{count}] but {len(values)} data elements")
            images = [spec.from_json(v, i, INPUT) for i, v in enumerate(values)]
        else:
            raise ProtocolError(f"input '{INPUT}' has neither 'data' nor binary data")
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")

    return InferRequest(request.get("id"), images, wanted_outputs(request))


def wanted_outputs(request: dict) -> list[tuple[str, bool]]:
    """The outputs a request asks for, and whether each comes as binary data."""
    request_params = request.get("parameters")
    request_params = request_params if isinstance(request_params, dict) else {}
    default_binary = bool(request_params.get("binary_data_output", False))
    wanted = request.get("outputs")
    outputs: list[tuple[str, bool]] = []
    if wanted is None:
        outputs = [(name, default_binary) for name in OUTPUTS]
    else:
        if not isinstance(wanted, list):
            raise ProtocolError("'outputs' must be a list")
        for out in wanted:
            name = out.get("name") if isinstance(out, dict) else None
            if name not in OUTPUTS:
                raise ProtocolError(f"unknown output {name!r}: this model gives {', '.join(OUTPUTS)}")
            params = out.get("parameters")
            params = params if isinstance(params, dict) else {}
            if params.get("classification"):
                raise ProtocolError("the classification extension is not supported: ask for 'label' and "
                                    "'probabilities'")
            outputs.append((name, bool(params.get("binary_data", default_binary))))
    return outputs


def _bytes_tensor(values: list[str]) -> bytes:
    parts = []
    for v in values:
        b = v.encode("utf-8")
        parts += [struct.pack("<I", len(b)), b]
    return b"".join(parts)


def encode_infer_response(model: str, request: InferRequest, probs: np.ndarray, labels: list[str]
                          ) -> tuple[bytes, dict]:
    """(body, extra headers) for the outputs the request asked for."""
    probs = np.ascontiguousarray(probs, dtype="<f4")
    outputs, blobs = [], []
    for name, binary in request.outputs:
        if name == "probabilities":
            tensor = {"name": name, "datatype": "FP32", "shape": list(probs.shape)}
            raw = probs.tobytes() if binary else None
            data = None if binary else probs.ravel().tolist()
        else:
            tensor = {"name": name, "datatype": "BYTES", "shape": [len(labels)]}
            raw = _bytes_tensor(labels) if binary else None
            data = None if binary else list(labels)
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = data
        outputs.append(tensor)
    response = {"model_name": model, "model_version": "1", "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                    "inference-header-content-length": str(len(head))}


IMAGE = V2Input("image", "encoded image files", "encoded image", _b64)
TEXT = V2Input("text", "UTF-8 texts", "text", _json_text)


def model_metadata(name: str, n_classes: int, platform: str, input_name: str = INPUT) -> dict:
    return {"name": name, "versions": ["1"], "platform": platform,
            "inputs": [{"name": input_name, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, n_classes]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]}]}
