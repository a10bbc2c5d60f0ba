"""Images: files on disk, read through the decoded cache, a timm body and fastai's head, uint8 squares on the wire."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd

from ..ingest import Candidate, Progress, display_path, find_candidates, inspect_files
from ..store import SPLITS, NewItem
from .base import ONNX_OUTPUT

NAME = "image"
UNIT = "px"          # what a model's `size` counts
NOUN = "image"
CARD = "thumbnail"
READ_LIMIT = None
pretrained_backbone = None   # nbml.embeddings chooses a timm body for images
recommended_backbones = None   # nbml.pretrained.BACKBONES (timm)
NEAR_EMBEDDING = None
item_stats = None            # ds.stats() of images is counted in the store
finish = refits = refit_on_all = None
forecast_rho = None          # not measured: a default image training did not fit the backtest on 2 cores
save_extra = load_extra = None   # the weights and config.json are all
QUANTIZE_REFUSED = None


def card_text(ds):
    return None


def read_chars(text: str) -> int:
    return len(text)


def _new_item(cand: Candidate, split: str | None = None) -> NewItem:
    shown = display_path(cand.path)
    # the exact bytes of the name are kept only for names that are not valid UTF-8
    return NewItem(cand.sha256, shown, cand.label, split, dict(
        path=shown, path_raw=os.fsencode(cand.path) if shown != cand.path else None, size_bytes=cand.size_bytes,
        mtime=cand.mtime, width=cand.width, height=cand.height))


def ingest(ds, candidates, splits: dict | None = None, progress=None, origin: str = "import"):
    """Read and check candidate files, then insert the good ones; each bad one is skipped with its reason."""
    from .._report import IngestReport
    report = IngestReport()
    pbar = Progress("ingest", enabled=progress)
    splits = splits or {}

    def good():
        for cand in inspect_files(candidates, ds.max_pixels, progress=pbar.update):
            if cand.problem:
                report.skipped.append((display_path(cand.path), cand.problem))
            else:
                yield _new_item(cand, splits.get(cand.path))

    ds.insert_items(NAME, good(), report, origin=origin)
    if ds.path is None and report.added:   # on a server: the others' grids read thumbnails there, not from this disk
        from ..thumbs import ThumbCache
        ThumbCache(ds).fill(report.added)
    pbar.close(report.summary())
    return report


def add(ds, values, labels=None, *, label_from="folder", progress=None, **kw):
    """`ds.add(...)` for images: a folder, a file or a list of paths (`labels`: class folders give them)."""
    if labels is not None:
        raise ValueError("images take their labels from class folders (label_from='folder') or from a DataFrame "
                         "with ds.add_dataframe(df, path_col=..., label_col=...)")
    return add_images(ds, values, label_from, progress=progress)


def add_images(ds, folder_or_paths, label_from="folder", *, progress=None):
    ds.check_kind(NAME)
    return ingest(ds, find_candidates(folder_or_paths, label_from), progress=progress)


def add_dataframe(ds, df, path_col="path", label_col="label", split_col=None, *, progress=None):
    ds.check_kind(NAME)
    for col in (path_col, label_col, split_col):
        if col is not None and col not in df.columns:
            raise KeyError(f"column {col!r} is not in the DataFrame (columns: {list(df.columns)})")
    splits, cands = {}, []
    for _, row in df.iterrows():
        label = row[label_col] if label_col else None
        label = None if label is None or (isinstance(label, float) and label != label) else str(label)
        cands.append(Candidate(os.path.abspath(os.fspath(row[path_col])), label=label))
        if split_col and isinstance(row[split_col], str):
            if row[split_col] not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, found {row[split_col]!r}")
            splits[cands[-1].path] = row[split_col]
    return ingest(ds, iter(cands), splits=splits, progress=progress)


# -- training -----------------------------------------------------------------------------------------------------
def usable(frame):
    """The items training can read (files that exist), and a note per item left out."""
    from ..data import check_files
    return check_files(frame)


def _default_size(ds, frame, pretrained: bool) -> int:
    import math
    dims = ds.df.set_index("id").loc[frame["id"], ["width", "height"]]
    side = float(np.median(np.minimum(dims["width"], dims["height"]))) if len(dims) else 224
    floor = 64 if pretrained else 32
    return int(min(224, max(floor, 32 * math.ceil(side / 32))))


def plan(ds, frame, classes, *, arch, size, bs, pretrained, weights, epochs, freeze_epochs, augment) -> dict:
    """This kind's part of a training plan: a timm body with fastai's head, image size, batch, augmentation."""
    from ..data import Augment
    from ..nets import build_net
    from ..pretrained import fit_size
    from ..learner import default_bs
    from ..nets import IMAGENET_MEAN, IMAGENET_STD
    arch = arch or "resnet18"
    net, source, _ = build_net(arch, len(classes), pretrained=pretrained, weights=weights)
    is_pretrained = source != "random"
    cfg = getattr(net[0], "pretrained_cfg", None) or {}
    size = fit_size(arch, int(size or _default_size(ds, frame, is_pretrained)))
    n_train = int((frame["split"] == "train").sum())
    if augment == "auto":
        dims = ds.df.set_index("id").loc[frame["id"], ["width", "height"]]
        augment = Augment.for_image_size(float(np.median(np.minimum(dims["width"], dims["height"]))))
    elif augment in (None, False):
        augment = None
    return dict(arch=arch, net=net, size=size, bs=int(bs or default_bs(n_train)),
                epochs=int(epochs if epochs is not None else 4 if is_pretrained else 10),
                freeze_epochs=int(freeze_epochs if freeze_epochs is not None else 1 if is_pretrained else 0),
                weights_source=source, mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
                std=tuple(cfg.get("std", IMAGENET_STD)), augment=augment)


def make_learner(plan, frame, stop_cb):
    """Decoded images (in GPU memory when they fit), the batch loaders and the Learner."""
    import torch
    from ..data import BatchLoader, ImageCache, to_device_images
    from ..learner import basic_learner
    cuda = plan.device.type == "cuda"
    array, rows, kept, notes = ImageCache(plan.ds, plan.size).rows(frame)
    on_device = to_device_images(array, rows, plan.device) if cuda else None
    if on_device is not None:
        array, rows = on_device
    frame = frame.iloc[kept].reset_index(drop=True)
    targets = frame["label"].map({c: i for i, c in enumerate(plan.classes)}).to_numpy()
    is_train = (frame["split"] == "train").to_numpy()
    common = dict(mean=plan.mean, std=plan.std, device=plan.device, channels_last=cuda)
    train_dl = BatchLoader(array, rows[is_train], targets[is_train], plan.bs, shuffle=True,
                           drop_last=is_train.sum() > plan.bs, augment=plan.augment, seed=plan.seed, **common)
    valid_dl = BatchLoader(array, rows[~is_train], targets[~is_train], plan.bs * 2, **common)
    if len(train_dl) == 0 or len(valid_dl) == 0:
        raise ValueError("after skipping unreadable items, the train or valid split is empty")
    net = plan.net.to(plan.device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    learn = basic_learner(plan, train_dl, valid_dl, net, stop_cb,
                          splitter=lambda m: [list(m[0].parameters()), list(m[1].parameters())])
    if cuda:
        learn.to_bf16()
    # unaugmented passes over train and valid, for the frozen phase's feature cache
    learn.nbml_loaders = (BatchLoader(array, rows[is_train], targets[is_train], plan.bs * 2, **common), valid_dl)
    return learn, frame, notes


def config(plan) -> dict:
    return dict(kind=NAME, head={"hidden": 512, "p": 0.5})


def fit_and_score(ds, emb, fit: np.ndarray, y: np.ndarray, score: np.ndarray, n_classes: int):
    """What ranks items without a model: a linear head fitted on the embeddings at positions `fit` (targets y),
    giving probabilities at positions `score`, and how that is said."""
    from ..head import fit_linear, linear_probs
    head = fit_linear(emb.features[fit], y, n_classes)
    return linear_probs(head, emb.features[score]), "a linear head fitted on the embeddings"


def head_model(ds, backbone, X, frame, target, is_train, classes, C=None):
    """mode="head" for images: a linear head fitted by L-BFGS on the cached embeddings, behind the backbone's body.
    Returns (net, train probabilities, valid probabilities, config fields)."""
    from torch import nn
    from ..head import fit_linear, linear_probs
    linear = fit_linear(X[is_train], target[is_train], len(classes), C=0.1 if C is None else C)
    net = nn.Sequential(backbone.body_copy(), linear)
    return net, linear_probs(linear, X[is_train]), linear_probs(linear, X[~is_train]), dict(kind=NAME)


# -- a model's inputs ---------------------------------------------------------------------------------------------
def probs_u8(model, batch: np.ndarray) -> np.ndarray:
    """Class probabilities for uint8 images [N, size, size, 3] (decoded squares): normalised on the model's device,
    bf16 autocast and channels_last on CUDA. `model` is anything with `net`, `config` and `device` (an
    `nbml.Model`, or what `nbml.model_files.read_model` gives the server's torch runner)."""
    import torch
    from ..data import normalize
    net, device = model.net, model.device
    mean = torch.tensor(model.config.get("mean") or [], dtype=torch.float32, device=device)
    std = torch.tensor(model.config.get("std") or [], dtype=torch.float32, device=device)
    net.eval()
    with torch.inference_mode():
        x = normalize(torch.from_numpy(np.ascontiguousarray(batch)).to(device), mean, std)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = net(x.contiguous(memory_format=torch.channels_last))
        else:
            logits = net(x.contiguous())
        return torch.softmax(logits.float(), 1).cpu().numpy()


batch_probs = probs_u8      # the server's torch runner: batches as nbml.kinds.image_serving decodes them


def square(model, image) -> np.ndarray:
    """One image (a path, encoded bytes or a Pillow image) as the model's uint8 square."""
    from .._imaging import open_rgb, to_square
    dataset = getattr(model, "dataset", None)
    img = open_rgb(image) if dataset is None else open_rgb(image, dataset.max_pixels)
    return to_square(img, int(model.config["size"]))


def predict_probs(model, values) -> "np.ndarray":
    """Class probabilities for images given as paths, encoded bytes or Pillow images."""
    return probs_u8(model, np.stack([square(model, v) for v in values]))


def item_probs(model, frame, bs: int = 256):
    """Probabilities for store items (through the decoded cache); items that cannot be read are dropped."""
    from ..data import ImageCache, check_files
    frame, _ = check_files(frame)
    if frame.empty:
        return frame, np.zeros((0, len(model.classes)), np.float32)
    array, rows, kept, _ = ImageCache(model._need_dataset(), model.size).rows(frame)
    frame = frame.iloc[kept].reset_index(drop=True)
    probs = [probs_u8(model, array[rows[i:i + bs]]) for i in range(0, len(rows), bs)]
    return frame, np.concatenate(probs)


def model_probs(model, emb) -> np.ndarray:
    """The model's probabilities from its body's embeddings: its head on the stored features (same as running the
    whole net, to float16 rounding), so a model's scores reuse the embedding cache."""
    import torch
    head = model.net[1]
    head.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(emb), 4096):
            x = torch.from_numpy(emb.features[i:i + 4096]).to(model.device)
            out.append(torch.softmax(head(x).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def load_net(folder, config: dict, state: dict):
    from ..nets import build_net
    net, _, _ = build_net(config["arch"], len(config["classes"]), pretrained=False, head=config.get("head"))
    net.load_state_dict(state)
    return net


# -- the data-centric loop: what is specific to images in nbml.analysis -------------------------------------------

PIXEL_SIZE = 32            # the decoded-cache size the pixel comparisons of `duplicates` and `label_issues` read
PIXEL_C = 0.01             # L2 strength of label_issues' pixel head: 0.1 and 1 flagged more false alarms on digits
SURFACE_WORDS = "16x16 pixel thumbnails"      # the evidence no label shaped, beside the embeddings
SURFACE_ONLY = "pixel comparison only"   # what duplicates() says when no backbone can embed
SURFACE_COLUMN = "pixel_similarity"
SURFACE_THRESHOLD = 0.99   # thumbnail correlation for near duplicates
QUERY_WORDS = "an image path, bytes or a Pillow image"


def query(ds, emb, value):
    """(vector, ids to leave out, words) for an image query of `similar`; None when `value` is item ids."""
    if not _is_image_like(value):
        return None
    vec, exclude = _image_query(ds, emb, value)
    return vec, exclude, "an image"


def compute(ds, backbone, todo: pd.DataFrame):
    """(items kept, a function giving the features of positions [start, stop) of them, notes): through the
    decoded cache at the backbone's size."""
    from ..data import ImageCache
    array, rows, kept, notes = ImageCache(ds, backbone.size).rows(todo)
    todo = todo.iloc[kept].reset_index(drop=True)
    return todo, lambda start, stop: backbone.features(array[rows[start:stop]]), notes


def surface(ds, ids):
    """What `duplicates` compares beside embeddings: (unit 16x16 thumbnails, hash of the decoded pixels, frame)."""
    return _pixel_thumbs(ds, _image_frame(ds, ids))


def _is_image_like(query) -> bool:
    from PIL import Image
    return isinstance(query, (bytes, bytearray, memoryview, Image.Image, os.PathLike)) or (
        isinstance(query, str) and not query.strip().lstrip("-").isdigit())


def _image_query(ds, emb, image):
    from PIL import Image
    exclude = set()
    data = None
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif not isinstance(image, Image.Image):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is not a file; give an item id, an image path, bytes or a Pillow image")
        with open(path, "rb") as f:
            data = f.read()
    if data is not None:    # the same content as an item: leave that item out, as for an id
        digest = hashlib.sha256(data).hexdigest()
        same = emb.frame.loc[emb.frame["sha256"] == digest, "id"]
        exclude = set(int(i) for i in same)
        image = data
    vec = embed_images(emb.backbone, [image], max_pixels=ds.max_pixels)[0]
    return vec, exclude


def _image_frame(ds, ids) -> pd.DataFrame:
    """The store columns `_pixel_thumbs` reads, for the image items among these ids (in their order)."""
    cols = ["id", "path", "path_raw", "sha256", "size_bytes", "mtime", "label", "split"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in ds.item_rows(ids) if r.get("kind", "image") == "image"],
                        columns=cols)


def _pixel_thumbs(ds, frame: pd.DataFrame):
    """Per-channel-centred, unit-length 16x16 colour thumbnails (from the 32 px decoded cache), and the hash of
    each item's 32 px pixels. Items that cannot be read are dropped: returns (thumbs, pixel hashes, kept)."""
    import torch
    import torch.nn.functional as F
    from ..data import ImageCache, check_files
    frame, _ = check_files(frame)
    array, rows, kept, _ = ImageCache(ds, PIXEL_SIZE).rows(frame)
    frame = frame.iloc[kept].reset_index(drop=True)
    thumbs, hashes = [], []
    for i in range(0, len(rows), 2048):
        block = np.asarray(array[rows[i:i + 2048]])
        hashes += [hashlib.blake2b(r.tobytes(), digest_size=16).hexdigest() for r in block]
        x = torch.from_numpy(block).permute(0, 3, 1, 2).float()
        x = F.adaptive_avg_pool2d(x, 16)
        x = (x - x.mean((2, 3), keepdim=True)).flatten(1)
        thumbs.append(F.normalize(x, dim=1).numpy())
    thumbs = np.concatenate(thumbs) if thumbs else np.zeros((0, 768), np.float32)
    return thumbs, np.asarray(hashes, object), frame


def surface_probs(ds, ids: list[int], y: np.ndarray, n_classes: int, folds: int, seed: int) -> np.ndarray | None:
    """Out-of-sample probabilities [len(ids), n_classes] of a logistic head cross-validated on 16x16 pixel
    thumbnails; NaN rows for items without pixels (not images, unreadable). None when too few have pixels."""
    from ..head import cross_val_probs
    thumbs, _, frame = _pixel_thumbs(ds, _image_frame(ds, ids))
    pos = pd.Index(ids).get_indexer(frame["id"])
    out = np.full((len(ids), n_classes), np.nan, np.float32)
    try:
        out[pos] = cross_val_probs(thumbs, y[pos], n_classes, folds=folds, seed=seed, C=PIXEL_C)
    except ValueError:          # fewer than two readable images in some class
        return None
    return out




# -- export and serving -------------------------------------------------------------------------------------------
# What nbml.export asks of a kind: the ONNX graph (what follows decoding and resizing), the inputs it is checked on,
# the config and model-card parts, the Triton entry. The server's half (decoding requests) is
# nbml/kinds/image_serving.py: the server never imports this module.
ONNX_INPUT = "pixels"
TRITON_MAX_BATCH = 64
PREPROCESSING = {
    "decode": "RGB; EXIF orientation applied; first frame of animations; alpha over white; 16-bit scaled to 8-bit",
    "resize": "shorter side to `size` (bilinear), then centre crop to size x size",
    "input": "uint8 RGB, NHWC [N, size, size, 3]",
    "normalise": "inside the ONNX graph: (pixel / 255 - mean) / std",
    "output": "softmax probabilities [N, len(classes)], in the order of `classes`",
}
SERVE_REQUIREMENTS = (("pillow", "10.0"),)


def onnx_wrapper(net, mean, std):
    import torch
    from torch import nn

    class OnnxWrapper(nn.Module):
        """uint8 NHWC in, probabilities out: normalisation and softmax inside the graph."""

        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean255", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
            self.register_buffer("std255", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float()
            return torch.softmax(self.net((x - self.mean255) / self.std255), dim=1)

    return OnnxWrapper().eval()


def sample_images(size: int, n: int = 4, seed: int = 0):
    """Random noise, flat grey and a gradient: inputs that exercise the whole range of pixel values."""
    import numpy as np
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    grey = np.full((1, size, size, 3), 128, np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, size, dtype=np.uint8)[None, None, :, None], (1, size, size, 3))
    return np.concatenate([noise, grey, ramp])


def onnx_graph(model, net) -> dict:
    """The module to export (float32 `net` on the CPU inside), a sample input and the graph's names and axes."""
    import torch
    size = int(model.config["size"])
    return dict(wrapper=onnx_wrapper(net, model.config["mean"], model.config["std"]),
                sample=(torch.zeros(2, size, size, 3, dtype=torch.uint8),), inputs=[ONNX_INPUT], output=ONNX_OUTPUT,
                dynamic={ONNX_INPUT: {0: "batch"}}, exporters=("torch.export", "torchscript"))


def check_feeds(model, size: int | None = None) -> tuple[list[dict], str]:
    """What the ONNX graph is compared with torch on at export: sample images in a batch of 1 and one of all."""
    images = sample_images(int(size or model.config["size"]))
    return [{ONNX_INPUT: images[:1]}, {ONNX_INPUT: images}], f"{len(images)} sample images"


def export_config(model) -> dict:
    return {"preprocessing": PREPROCESSING}


def quantize(model, float_onnx, int8_onnx, **kw) -> dict:
    from .._quantization import quantize_checked
    return quantize_checked(model, float_onnx, int8_onnx, ONNX_INPUT, **kw)


def triton_config(name: str, size: int, n_classes: int, max_batch: int = TRITON_MAX_BATCH) -> str:
    """config.pbtxt for Triton's ONNX Runtime backend. Triton feeds tensors, not encoded images: clients (or an
    ensemble with a decoding step) must send uint8 [N, size, size, 3] already resized as `PREPROCESSING` says."""
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
  {{
    name: "{ONNX_INPUT}"
    data_type: TYPE_UINT8
    dims: [ {size}, {size}, 3 ]
  }}
]
output [
  {{
    name: "{ONNX_OUTPUT}"
    data_type: TYPE_FP32
    dims: [ {n_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
version_policy: {{ latest: {{ num_versions: 1 }} }}
"""


def triton_entry(config: dict) -> dict[str, str]:
    """The files of the Triton model repository entry, besides `1/model.onnx`."""
    return {"config.pbtxt": triton_config(config["name"], int(config["size"]), len(config["classes"])),
            "labels.txt": "\n".join(config["classes"]) + "\n"}


def card(config: dict) -> dict:
    """The model card's kind-specific parts (see nbml.export.model_card)."""
    size, n = config["size"], len(config["classes"])
    onnx = config["onnx"]
    check = onnx["check"]
    return dict(
        summary=f"An image classifier made with nbml {config['exported_with']}: a `{config['arch']}` backbone "
                f"(timm) with a fastai head, {n} classes, {size}x{size} px input.",
        input=[f"- {k}: {v}" for k, v in config["preprocessing"].items()]
        + [f"- mean {config['mean']}, std {config['std']}"],
        onnx_file=f"- `model.onnx` ({onnx.get('precision', 'float32')}): input `{ONNX_INPUT}` uint8 "
                  f"[N, {size}, {size}, 3], output `{ONNX_OUTPUT}` float32 [N, {n}]; the float32 graph was "
                  f"checked at export against torch (largest difference {check['max_abs_diff']:.1e}, tolerance "
                  f"{check['tolerance']:.0e}, {check['samples']} sample images)",
        try_it="curl -F file=@photo.jpg http://127.0.0.1:8000/predict",
        serving=["nbml's server takes encoded images (JPEG, PNG, ...) on `POST /predict` and on the Open Inference "
                 f"Protocol (`POST /v2/models/{config['name']}/infer`, input `image` BYTES), and decodes and "
                 f"resizes them itself.", "",
                 "Triton (or KServe with the Triton runtime) runs the ONNX model, which takes tensors, not encoded "
                 f"images: point it at `triton/` and send uint8 [N, {size}, {size}, 3] pixels resized as above "
                 "(decode in the client, or add a decoding model in front as a Triton ensemble). Its output "
                 f"`{ONNX_OUTPUT}` is already softmaxed."],
        limits=[f"- The model always answers one of its {n} classes, even for a picture of something else; "
                "a low confidence is the only sign. Look at low-confidence inputs (`nbml.monitor`, "
                "`ds.add_from_log`).",
                "- It knows only what its training data showed: other cameras, lighting or backgrounds can lower "
                "accuracy without warning. The metrics above come from the validation split of the same data."])


def _extension(data: bytes) -> str:
    import io
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").lower()
    except Exception:
        return ".bin"
    return {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}" if fmt else ".bin")


def add_logged(ds, logged: dict):
    """`ds.add_from_log`'s last step: logged images ({sha256 of the bytes: bytes}) written to `ds.home/from_log`
    and added as unlabelled items; returns the IngestReport."""
    import hashlib
    from pathlib import Path
    folder = Path(ds.home) / "from_log"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sha, image in logged.items():
        if hashlib.sha256(image).hexdigest() != sha:   # the logged hash is of these exact bytes
            continue
        path = folder / f"{sha[:20]}{_extension(image)}"
        if not path.exists():
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(image)
            os.replace(tmp, path)
        paths.append(str(path))
    return ds.add_images(paths, label_from=None, progress=False)


def embed_images(backbone, images, max_pixels: int | None = None) -> np.ndarray:
    """float32 features [n, D] for images given as paths, encoded bytes or Pillow images (not stored)."""
    from .._imaging import open_rgb, to_square
    squares = []
    for im in images:
        img = open_rgb(im) if max_pixels is None else open_rgb(im, max_pixels)
        squares.append(to_square(img, backbone.size))
    return backbone.features(np.stack(squares)) if squares else np.zeros((0, 0), np.float32)
