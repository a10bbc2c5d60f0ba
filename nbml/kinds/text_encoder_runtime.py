"""The light half of the sentence-encoder text path: tokens from `tokenizers`, embeddings from ONNX Runtime, class
probabilities from a linear head in numpy. Nothing here imports torch, transformers, scikit-learn or pandas (a
test checks it in a fresh interpreter), so the model server and the background embedding of a large project can
load it alone.

- `TokenCounter` / `token_batches`: texts tokenised once with the encoder's fast tokenizer, cut to `max_tokens`,
  grouped into batches of similar length (a batch is padded only to its own longest text, and short texts are not
  padded to a long one's length: that is most of the speed on texts of mixed length);
- `OnnxSentenceEncoder(folder, precision="int8")`: the exported encoder (`encoder.onnx` / `encoder-int8.onnx`,
  written by `nbml.kinds.text_encoder.export_onnx`) and its tokenizer; `.embed(texts)` gives the pooled, L2-normalised
  sentence embeddings, float32 [n, dim], in the order given;
- `LinearHead`: the logistic-regression head on those embeddings (classes, weights, biases), saved as `head.npz`;
  `.probs(embeddings)` is a softmax (or a sigmoid for two classes) in numpy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..serving.runners import cpu_session, default_threads

__all__ = ["ENCODER_FILE", "ENCODER_INT8_FILE", "TOKENIZER_FILE", "ENCODER_CONFIG_FILE", "HEAD_FILE",
           "load_tokenizer", "token_ids", "length_batches", "padded", "OnnxSentenceEncoder", "LinearHead",
           "hub_cache", "hub_offline"]

ENCODER_FILE = "encoder.onnx"             # float32: input_ids, attention_mask (int64 [batch, tokens]) -> embedding
ENCODER_INT8_FILE = "encoder-int8.onnx"   # the same graph with dynamically quantised int8 weights
TOKENIZER_FILE = "tokenizer.json"         # the encoder's fast tokenizer (Hugging Face `tokenizers` format)
ENCODER_CONFIG_FILE = "encoder.json"      # max_tokens, dim, pad id, input and output names, where it came from
HEAD_FILE = "head.npz"                    # LinearHead: classes, coef [classes or 1, dim], intercept
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "sentence_embedding"   # not "embedding": a name the exported graph uses inside


def hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (not when huggingface_hub was imported)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# -- tokens -----------------------------------------------------------------------------------------------------------
def load_tokenizer(path: str | os.PathLike):
    """A `tokenizers.Tokenizer` from a tokenizer.json file (or the folder holding one), with padding and truncation
    off: nbml pads each batch itself, to the batch's longest text, and `token_ids` sets the truncation."""
    from tokenizers import Tokenizer
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the encoder's fast tokenizer (tokenizer.json) is needed")
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def token_ids(tok, texts: list[str], max_tokens: int) -> list[list[int]]:
    """Each text's token ids with the encoder's special tokens ([CLS] ... [SEP]), cut to `max_tokens` (the closing
    special token is kept). `tok` is a `tokenizers.Tokenizer`."""
    if not len(texts):
        return []
    if (tok.truncation or {}).get("max_length") != int(max_tokens):
        tok.enable_truncation(max_length=int(max_tokens))
    return [e.ids for e in tok.encode_batch([str(t) for t in texts])]


def pad_id(tok) -> int:
    """The tokenizer's [PAD] id (0 for BERT vocabularies, and when it names none)."""
    for name in ("[PAD]", "<pad>"):
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    return 0


def length_batches(lengths, bs: int) -> list[np.ndarray]:
    """Positions of texts in batches of at most `bs` texts of similar length (sorted, longest first, so a memory
    error shows on the first batch rather than the last)."""
    order = np.argsort(-np.asarray(lengths, np.int64), kind="stable")
    return [order[i:i + bs] for i in range(0, len(order), bs)]


def padded(seqs: list, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[B, L] int64 ids padded with `pad` to the longest of `seqs`, and the int64 attention mask; L >= 1."""
    width = max(1, max((len(s) for s in seqs), default=1))
    ids = np.full((len(seqs), width), pad, np.int64)
    mask = np.zeros((len(seqs), width), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


# -- the encoder in ONNX Runtime -------------------------------------------------------------------------------------
class OnnxSentenceEncoder:
    """An exported sentence encoder (a folder written by `nbml.kinds.text_encoder.export_onnx`) in an ONNX Runtime
    session on the CPU. `precision="int8"` reads `encoder-int8.onnx` (falls back to float32 when the folder has no
    int8 graph), `"float32"` reads `encoder.onnx`."""

    def __init__(self, folder: str | os.PathLike, precision: str = "int8", threads: int | None = None,
                 max_tokens: int | None = None):
        self.folder = Path(folder)
        config_path = self.folder / ENCODER_CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} is missing: export the encoder with "
                                    f"nbml.kinds.text_encoder.export_onnx(encoder, tokenizer, folder)")
        self.config = json.loads(config_path.read_text())
        if precision not in ("int8", "float32"):
            raise ValueError(f"precision is 'int8' or 'float32', not {precision!r}")
        name = self.config.get("int8_file") if precision == "int8" else None
        if not name or not (self.folder / name).is_file():
            precision, name = "float32", self.config.get("file", ENCODER_FILE)
        self.precision, self.path = precision, self.folder / name
        self.session = cpu_session(self.path, threads)
        self.threads = threads or default_threads()
        self.tokenizer = load_tokenizer(self.folder / self.config.get("tokenizer", TOKENIZER_FILE))
        self.max_tokens = int(max_tokens or self.config["max_tokens"])
        self.pad = int(self.config.get("pad_id", pad_id(self.tokenizer)))
        self.dim = int(self.config["dim"])
        self.inputs = tuple(self.config.get("inputs", INPUTS))
        self.output = self.config.get("output", OUTPUT)

    def embed_ids(self, seqs: list, bs: int = 64, progress=None) -> np.ndarray:
        """Embeddings of token id lists, float32 [n, dim], in the order given; batches of similar length.
        `progress(done, total)` is called after each batch when given."""
        out = np.zeros((len(seqs), self.dim), np.float32)
        done = 0
        for idx in length_batches([len(s) for s in seqs], bs):
            ids, mask = padded([seqs[i] for i in idx], self.pad)
            out[idx] = self.session.run([self.output], {self.inputs[0]: ids, self.inputs[1]: mask})[0]
            done += len(idx)
            if progress is not None:
                progress(done, len(seqs))
        return out

    def embed(self, texts: list[str], bs: int = 64, progress=None) -> np.ndarray:
        """The pooled, L2-normalised embeddings of texts, float32 [n, dim], in the order given."""
        return self.embed_ids(token_ids(self.tokenizer, list(texts), self.max_tokens), bs, progress)

    def __repr__(self) -> str:
        return (f"OnnxSentenceEncoder({self.config.get('encoder', '?')}, {self.precision}, {self.dim} dims, "
                f"{self.max_tokens} tokens, {self.threads} threads)")


# -- the head ----------------------------------------------------------------------------------------------------------
class LinearHead:
    """A (multinomial) logistic regression on the embeddings: `coef` [n_classes, dim] and `intercept` [n_classes],
    or for two classes one row scoring the second class (as scikit-learn stores it)."""

    def __init__(self, classes, coef, intercept):
        self.classes = [str(c) for c in classes]
        self.coef = np.asarray(coef, np.float32)
        self.intercept = np.asarray(intercept, np.float32).reshape(-1)
        if self.coef.ndim != 2 or self.coef.shape[0] != len(self.intercept):
            raise ValueError(f"a linear head's coef is [rows, dim] with one intercept per row, not "
                             f"{self.coef.shape} and {self.intercept.shape}")
        binary = len(self.classes) == 2 and self.coef.shape[0] == 1
        if not binary and self.coef.shape[0] != len(self.classes):
            raise ValueError(f"{self.coef.shape[0]} rows of weights for {len(self.classes)} classes")

    @property
    def dim(self) -> int:
        return int(self.coef.shape[1])

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, np.float32) @ self.coef.T + self.intercept

    def probs(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 [n, n_classes], columns in `classes` order."""
        z = self.scores(embeddings)
        if z.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(z[:, 0], -60, 60)))
            return np.stack([1 - p, p], 1).astype(np.float32)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def predict(self, embeddings: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.probs(embeddings).argmax(1)]

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, classes=np.asarray(self.classes, dtype=str), coef=self.coef, intercept=self.intercept)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearHead":
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(z["classes"].tolist(), z["coef"], z["intercept"])

    def __repr__(self) -> str:
        return f"LinearHead({len(self.classes)} classes, {self.dim} dims)"
