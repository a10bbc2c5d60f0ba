"""What turns a text into the text network's inputs: WordLlama's tokenizer (token ids) and hashed word and
character n-grams (counts). numpy, `tokenizers` and scikit-learn's hashing only: the model server imports this
without torch or pandas. The weighting (TF-IDF) and everything after it is inside the network and its ONNX graph.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

WORDLLAMA = "l2_supercat_256"
MAX_TOKENS = 256                  # tokens the model reads per text; the rest is kept in the store, not read
WORD_BUCKETS = 2 ** 17            # hashed word 1-2 grams
CHAR_BUCKETS = 2 ** 17            # hashed character 2-4 grams within word boundaries


# -- tokens and n-grams ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def wordllama_files() -> tuple[Path, Path]:
    """(weights, tokenizer JSON) inside the installed `wordllama` wheel; never the network."""
    import importlib.util
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.origin:
        raise RuntimeError("text projects need the wordllama package (its pretrained embedding ships inside it): "
                           "pip install wordllama")
    root = Path(spec.origin).parent
    weights = root / "weights" / f"{WORDLLAMA}.safetensors"
    tok = root / "tokenizers" / f"{WORDLLAMA.rsplit('_', 1)[0]}_tokenizer_config.json"
    for f in (weights, tok):
        if not f.is_file():
            raise RuntimeError(f"the wordllama package lacks {f.name}; reinstall it (pip install --force-reinstall "
                               f"wordllama)")
    return weights, tok


@functools.lru_cache(maxsize=1)
def tokenizer_json() -> str:
    return wordllama_files()[1].read_text(encoding="utf-8")


@functools.lru_cache(maxsize=4)
def tokenizer(json_text: str | None = None):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(json_text or tokenizer_json())
    tok.no_padding()
    tok.no_truncation()
    return tok


@functools.lru_cache(maxsize=1)
def wordllama_table() -> np.ndarray:
    from safetensors.numpy import load_file
    tensors = load_file(str(wordllama_files()[0]))
    return next(iter(tensors.values())).astype(np.float32)


def token_ids(texts: list[str], max_tokens: int = MAX_TOKENS, tok=None) -> list[np.ndarray]:
    """Token ids of each text (first `max_tokens`), no special tokens, as WordLlama was trained."""
    tok = tok or tokenizer()
    encs = tok.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids[:max_tokens], dtype=np.int64) for e in encs]


@functools.lru_cache(maxsize=1)
def _hashers():
    from sklearn.feature_extraction.text import HashingVectorizer
    common = dict(alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)
    return (HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=WORD_BUCKETS, **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=CHAR_BUCKETS, **common))


def gram_counts(texts: list[str], max_chars: int = MAX_TOKENS * 8):
    """Hashed n-gram counts, CSR [n, WORD_BUCKETS + CHAR_BUCKETS]: word 1-2 grams then character 2-4 grams of
    each text's first `max_chars` characters (what the model reads)."""
    import scipy.sparse as sp
    clipped = [t[:max_chars] for t in texts]
    word, char = _hashers()
    return sp.hstack([word.transform(clipped), char.transform(clipped)], format="csr")


def padded(seqs: list[np.ndarray], dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """[B, L] values (zero-padded) and a float32 mask of the real positions; L >= 1."""
    width = max(1, max((len(s) for s in seqs), default=1))
    out = np.zeros((len(seqs), width), dtype)
    mask = np.zeros((len(seqs), width), np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return out, mask


def encode(texts: list[str], max_tokens: int = MAX_TOKENS, tok=None) -> dict:
    """The network's four inputs for texts: `ids`, `mask` [B, L]; `gram_ids`, `gram_counts` [B, M]."""
    ids, mask = padded(token_ids(texts, max_tokens, tok))
    counts = gram_counts(texts)
    rows = [counts.indices[counts.indptr[i]:counts.indptr[i + 1]] for i in range(counts.shape[0])]
    vals = [counts.data[counts.indptr[i]:counts.indptr[i + 1]] for i in range(counts.shape[0])]
    gram_ids, _ = padded(rows)
    gram_vals, _ = padded(vals, np.float32)
    return {"ids": ids, "mask": mask, "gram_ids": gram_ids, "gram_counts": gram_vals}




def idf_of(texts: list[str]) -> np.ndarray:
    """Smoothed inverse document frequency per n-gram bucket (scikit-learn's formula), float32."""
    counts = gram_counts(texts)
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    return (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)


def tfidf(counts, idf: np.ndarray):
    """Counts weighted by idf, each block (words, characters) scaled to unit length: the n-gram features."""
    import scipy.sparse as sp
    x = counts.multiply(idf[None, :]).tocsr().astype(np.float32)
    blocks = []
    for lo, hi in ((0, WORD_BUCKETS), (WORD_BUCKETS, WORD_BUCKETS + CHAR_BUCKETS)):
        b = x[:, lo:hi]
        norms = np.sqrt(np.asarray(b.multiply(b).sum(1)).ravel())
        blocks.append(sp.diags(1 / np.maximum(norms, 1e-12)) @ b)
    return sp.hstack(blocks, format="csr")


INPUT_NAMES = ("ids", "mask", "gram_ids", "gram_counts")
