"""What turns a text into the text network's inputs: WordLlama's tokenizer (token ids) and hashed word and
character n-grams (counts). numpy, `tokenizers` and scikit-learn's hashing only: the model server imports this
without torch or pandas. The weighting (TF-IDF) and everything after it is inside the network and its ONNX graph.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

WORDLLAMA = "l2_supercat_256"
MAX_TOKENS = 256                  # tokens the model reads per text; the rest is kept in the store, not read
WORD_BUCKETS = 2 ** 17            # hashed word 1-2 grams
CHAR_BUCKETS = 2 ** 17            # hashed character 2-4 grams within word boundaries
# How a text opens: its first word and its first two, as features of their own ("^how", "^how many"). Questions,
# requests and subject lines say what they are in their first words, which the bag of n-grams cannot place. TREC-6
# with 16 random labels per class, the closed-form head (5 seeds, offline): 0.546 -> 0.588 accuracy; SMS spam F1 with
# 16 per class (20 seeds) 0.853 -> 0.855. Models saved before this block have no such buckets (`buckets_of`).
OPEN_BUCKETS = 2 ** 15
OPENING_WORDS = 2
TEXT_BUCKETS = WORD_BUCKETS + CHAR_BUCKETS      # the n-grams of the text itself
GRAM_BUCKETS = TEXT_BUCKETS + OPEN_BUCKETS
_WORD = re.compile(r"(?u)\b\w+\b")


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


def opening_words(text: str) -> list[str]:
    """The features of how a text opens: "^" and its first word, then its first two (lowercased)."""
    words = _WORD.findall(text[:400].lower())[:OPENING_WORDS]
    return ["^" + " ".join(words[:i]) for i in range(1, len(words) + 1)]


@functools.lru_cache(maxsize=1)
def _hashers():
    from sklearn.feature_extraction.text import HashingVectorizer
    common = dict(alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)
    return (HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=WORD_BUCKETS, **common),
            HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=CHAR_BUCKETS, **common),
            HashingVectorizer(analyzer=opening_words, n_features=OPEN_BUCKETS, **common))


def blocks(buckets: int) -> list[tuple[int, int]]:
    """The (first, end) buckets of each block of n-gram features among `buckets`: words, characters[, opening]."""
    if buckets not in (TEXT_BUCKETS, GRAM_BUCKETS):
        raise ValueError(f"a text model has {TEXT_BUCKETS} or {GRAM_BUCKETS} n-gram buckets, not {buckets}")
    out = [(0, WORD_BUCKETS), (WORD_BUCKETS, TEXT_BUCKETS)]
    return out + [(TEXT_BUCKETS, GRAM_BUCKETS)] if buckets == GRAM_BUCKETS else out


def buckets_of(config: dict) -> int:
    """The n-gram buckets of a saved model (those saved before the opening words have none of theirs)."""
    return int(config["word_buckets"]) + int(config["char_buckets"]) + int(config.get("open_buckets", 0))


def gram_config() -> dict:
    """What a model's config.json records of its n-gram features."""
    return dict(word_buckets=WORD_BUCKETS, char_buckets=CHAR_BUCKETS, open_buckets=OPEN_BUCKETS,
                opening_words=OPENING_WORDS)


def gram_counts(texts: list[str], max_chars: int = MAX_TOKENS * 8, buckets: int = GRAM_BUCKETS):
    """Hashed n-gram counts, CSR [n, buckets]: word 1-2 grams, character 2-4 grams of each text's first `max_chars`
    characters (what the model reads), then (with GRAM_BUCKETS) its opening words."""
    import scipy.sparse as sp
    clipped = [t[:max_chars] for t in texts]
    hashers = _hashers()[:len(blocks(buckets))]
    return sp.hstack([h.transform(clipped) for h in hashers], format="csr")


def padded(seqs: list[np.ndarray], dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """[B, L] values (zero-padded) and a float32 mask of the real positions; L >= 1."""
    width = max(1, max((len(s) for s in seqs), default=1))
    out = np.zeros((len(seqs), width), dtype)
    mask = np.zeros((len(seqs), width), np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return out, mask


def encode(texts: list[str], max_tokens: int = MAX_TOKENS, tok=None, buckets: int = GRAM_BUCKETS) -> dict:
    """The network's four inputs for texts: `ids`, `mask` [B, L]; `gram_ids`, `gram_counts` [B, M]. `buckets`:
    the model's (`buckets_of(config)`)."""
    ids, mask = padded(token_ids(texts, max_tokens, tok))
    counts = gram_counts(texts, buckets=buckets)
    rows = [counts.indices[counts.indptr[i]:counts.indptr[i + 1]] for i in range(counts.shape[0])]
    vals = [counts.data[counts.indptr[i]:counts.indptr[i + 1]] for i in range(counts.shape[0])]
    gram_ids, _ = padded(rows)
    gram_vals, _ = padded(vals, np.float32)
    return {"ids": ids, "mask": mask, "gram_ids": gram_ids, "gram_counts": gram_vals}




def idf_from_df(df: np.ndarray, n: int) -> np.ndarray:
    """Smoothed inverse document frequency per n-gram bucket (scikit-learn's formula) from document frequencies
    among `n` texts, float32; 1 for the opening words (a text's first word weighs the same however common)."""
    idf = (np.log((1 + n) / (1 + np.asarray(df, np.float64))) + 1).astype(np.float32)
    idf[TEXT_BUCKETS:] = 1.0
    return idf


def tfidf(counts, idf: np.ndarray):
    """Counts weighted by idf, each block (words, characters, opening words) scaled to unit length: the n-gram
    features."""
    import scipy.sparse as sp
    x = counts.multiply(idf[None, :]).tocsr().astype(np.float32)
    parts = []
    for lo, hi in blocks(x.shape[1]):
        b = x[:, lo:hi]
        norms = np.sqrt(np.asarray(b.multiply(b).sum(1)).ravel())
        parts.append(sp.diags(1 / np.maximum(norms, 1e-12)) @ b)
    return sp.hstack(parts, format="csr")


INPUT_NAMES = ("ids", "mask", "gram_ids", "gram_counts")
