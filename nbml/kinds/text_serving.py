"""The server's text half: request bodies to texts, texts to the ONNX graph's inputs (a sentence encoder's token ids
and mask through nbml.kinds.text_encoder_runtime; the static model's four arrays, WordLlama's tokenizer and
scikit-learn's hashing, through nbml.kinds.text_encoding: no torch, no pandas), the runners.

A text is refused with 400 when it is not valid UTF-8, empty or only whitespace, longer than `max_text_chars`, or
not a string. The log keeps each text's first `log_text_chars` characters, for `log_texts` texts in all."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .._imaging import read_file
from .text_encoder_runtime import INPUTS as ENCODER_INPUTS
from .text_encoder_runtime import length_batches, load_tokenizer, pad_id, padded, token_ids
from .text_encoding import INPUT_NAMES, MAX_TOKENS, buckets_of, encode, tokenizer
from ..serving import v2
from ..serving.app import HTTPError, json_body
from ..serving.runners import OnnxRunner, TorchRunner, choose_runner

__all__ = ["Inputs", "TextOnnxRunner", "EncoderOnnxRunner"]


class TextOnnxRunner(OnnxRunner):
    """Texts (an object array of str) in: encoded in the batch's thread, then the ONNX graph."""

    def __init__(self, folder: Path, config: dict, threads: int | None, tok, max_tokens: int):
        super().__init__(folder, config, threads)
        self.tok, self.max_tokens, self.buckets = tok, max_tokens, buckets_of(config)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        feeds = encode(list(batch), self.max_tokens, self.tok, self.buckets)
        return self.session.run([self.output], {k: feeds[k] for k in INPUT_NAMES})[0]


class EncoderOnnxRunner(OnnxRunner):
    """A sentence-encoder model's texts: the encoder's tokenizer (with its special tokens), padded to the longest
    text of each group of similar length, then the ONNX graph (encoder and head)."""

    def __init__(self, folder: Path, config: dict, threads: int | None, tok, max_tokens: int):
        super().__init__(folder, config, threads)
        self.tok, self.max_tokens = tok, max_tokens
        self.pad = int(config.get("pad_id", pad_id(tok)))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        seqs = token_ids(self.tok, list(batch), self.max_tokens)
        out = None
        for idx in length_batches([len(s) for s in seqs], 32):
            ids, mask = padded([seqs[i] for i in idx], self.pad)
            probs = self.session.run([self.output], {ENCODER_INPUTS[0]: ids, ENCODER_INPUTS[1]: mask})[0]
            if out is None:
                out = np.zeros((len(seqs), probs.shape[1]), np.float32)
            out[idx] = probs
        return out


def _text_of(value, i: int, n: int, max_chars: int) -> str:
    where = f"text {i + 1} of {n}" if n > 1 else "the text"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise HTTPError(400, f"{where} is not valid UTF-8 (byte {e.start}): send UTF-8 text") from None
    if not isinstance(value, str):
        raise HTTPError(400, f"{where} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, f"{where} is not valid Unicode (a lone surrogate escape): send UTF-8 text") from None
    if not value.strip():
        raise HTTPError(400, f"{where} is empty: send some text to classify")
    if len(value) > max_chars:
        raise HTTPError(400, f"{where} has {len(value):,} characters, more than this server's limit of "
                             f"{max_chars:,} per text (the model reads only the first tokens: send less, or start "
                             f"the server with a larger max_text_chars)")
    return value


def parse_json_texts(body: bytes) -> tuple[list, bool]:
    """(texts, single) from {"text": "..."}, {"texts": ["...", ...]}, a bare string or a bare list."""
    payload = json_body(body)
    if isinstance(payload, dict):
        if "text" in payload:
            payload = payload["text"]
            if isinstance(payload, list):
                raise HTTPError(400, '\'text\' is one string; send several as {"texts": ["...", ...]}')
        elif "texts" in payload:
            payload = payload["texts"]
            if not isinstance(payload, list):
                raise HTTPError(400, "'texts' must be a list of strings")
        else:
            raise HTTPError(400, 'send {"text": "..."} or {"texts": ["...", ...]}')
    if isinstance(payload, list):
        return payload, False
    return [payload], True


class Inputs:
    """Texts in (JSON or text/plain on /predict, BYTES `text` on the Open Inference Protocol); an object array of
    str to the runner; the text's first characters to the log."""
    kind = noun = "text"
    v2 = v2.TEXT
    try_it = "-H 'Content-Type: application/json' -d '{\"text\": \"hello\"}'"
    file_extensions = frozenset({".txt"})   # what nbml.predict_files takes from a folder

    def __init__(self, folder, config: dict, settings):
        self.settings = settings
        self.max_tokens = int(config.get("max_tokens") or config.get("size") or MAX_TOKENS)
        tok_file = Path(folder) / config.get("tokenizer", "tokenizer.json")
        if not tok_file.is_file():
            raise FileNotFoundError(f"{tok_file} is missing: serve a folder written by model.export(folder)")
        self.encoder = "encoder" in config        # a sentence-encoder model (nbml.kinds.text_setfit)
        self.tok = load_tokenizer(tok_file) if self.encoder else tokenizer(tok_file.read_text(encoding="utf-8"))

    def make_runner(self, folder, config: dict, device: str, threads: int | None):
        kind, dev = choose_runner(device)
        if kind == "onnxruntime":
            runner = EncoderOnnxRunner if self.encoder else TextOnnxRunner
            return runner(folder, config, threads, self.tok, self.max_tokens)
        return TorchRunner(folder, config, dev)   # texts in, through nbml.kinds.text.batch_probs

    def warm_up_batch(self) -> np.ndarray:
        return np.array(["A short text to warm the model up."], dtype=object)

    def log_budget(self, log_texts: int, log_text_chars: int, **_) -> tuple[int, int]:
        """(texts to keep in the log in all, largest kept in bytes: `payload` already cuts them to this)."""
        return log_texts, 4 * log_text_chars

    def parse_predict(self, body: bytes, content_type: str) -> tuple[list, bool]:
        if content_type.startswith("application/json"):
            return parse_json_texts(body)
        if content_type.startswith("text/plain"):
            return [body], True
        raise HTTPError(400, 'send JSON {"text": "..."} or {"texts": ["...", ...]} with Content-Type '
                             "application/json, or the text itself with Content-Type text/plain (UTF-8)")

    def read_file(self, path) -> str:
        """One UTF-8 text file to the runner's str (nbml.predict_files); ValueError says why not."""
        try:
            return _text_of(read_file(path), 0, 1, self.settings.max_text_chars)
        except HTTPError as e:
            raise ValueError(e.message) from None

    async def prepare(self, service, values: list) -> tuple[np.ndarray, list[str]]:
        """(texts as an object array, sha256 of each text's UTF-8); a bad text is a 400 that names it."""
        texts = [_text_of(v, i, len(values), self.settings.max_text_chars) for i, v in enumerate(values)]
        batch = np.empty(len(texts), dtype=object)
        batch[:] = texts
        return batch, [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]

    def digest(self, value) -> str:
        return hashlib.sha256(value if isinstance(value, bytes) else str(value).encode("utf-8")).hexdigest()

    def payload(self, value, text: str) -> bytes:
        """What the log keeps of a text: its first `log_text_chars` characters, UTF-8."""
        return text[:self.settings.log_text_chars].encode("utf-8")
