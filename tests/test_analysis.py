"""The data-centric loop on real parts: a real SQLite project, a real (tiny) trained body giving the embeddings,
float16 files on disk, cleanlab on deliberately flipped labels, and the head-only training mode."""
import io
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import nbml
import nbml.embeddings as embeddings_module
from nbml.embeddings import NoBackboneError
from nbml.kinds import image as image_kind

from conftest import COLOURS, make_images

FAST = dict(arch="test_resnet", epochs=3, size=32, bs=8, lr=3e-3, pretrained=False, quiet=True, seed=0)
OTHER = {"red": "green", "green": "blue", "blue": "red"}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No pretrained weights can be had, as on the machines this is built on: an empty hub cache, offline."""
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(embeddings_module, "_PRETRAINED", {})
    warnings.simplefilter("ignore", FutureWarning)     # torch.jit deprecation noise from timm's test models


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A project of 36 colour images with one model trained on it (once for the module: training is the slow part)."""
    import huggingface_hub.constants
    root = tmp_path_factory.mktemp("trained")
    folder = make_images(root / "images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "empty-hub-cache"))
        ds = nbml.Dataset(root / "project.nbml")
        ds.add_images(folder)
        nbml.train(ds, **FAST)
        ds.close()
    return root


@pytest.fixture
def trained(template, tmp_path):
    """A copy of the trained project (its own store and side folder; the images and run 1's model are shared)."""
    for name in ("project.nbml", "project.nbml-wal", "project.nbml-shm"):
        if (template / name).exists():
            shutil.copy(template / name, tmp_path / name)
    shutil.copytree(template / "project.nbml.d", tmp_path / "project.nbml.d")
    ds = nbml.Dataset(tmp_path / "project.nbml")
    yield ds, ds.load_run(), template / "images"
    ds.close()


def colour_of(path: str) -> str:
    """The true colour of a generated image: its class folder, or the prefix of a flat file name."""
    parts = path.replace("\\", "/").split("/")
    return parts[-2] if parts[-2] in COLOURS else parts[-1].split("_")[0]


def flat_unlabelled(folder, per_class=6, seed=7):
    """Unlabelled images in one flat folder, named `<colour>_<n>.png` (ids do not follow colour)."""
    make_images(folder / "src", per_class=per_class, seed=seed)
    flat = folder / "flat"
    flat.mkdir()
    rng = np.random.default_rng(seed)
    files = sorted((folder / "src").rglob("*.png"))
    for n, f in enumerate(rng.permutation(len(files))):
        shutil.copy(files[f], flat / f"{files[f].parent.name}_{n}.png")
    return flat


def structured(seed=1, size=96) -> Image.Image:
    """A picture with structure (gradient and shapes), which survives JPEG re-encoding as photos do."""
    r = np.random.default_rng(seed)
    base = np.linspace(0, 1, size)[None, :, None] * r.integers(0, 255, 3) + r.integers(-20, 20, (size, size, 3)) + 60
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = r.integers(0, size - 20, 2)
        draw.ellipse([x, y, x + int(r.integers(10, 40)), y + int(r.integers(10, 40))],
                     fill=tuple(int(c) for c in r.integers(0, 255, 3)))
    return im


# -- embeddings ---------------------------------------------------------------------------------------------------
def test_offline_without_a_trained_model_gives_a_clear_error_never_random(ds):
    with pytest.raises(NoBackboneError, match=r"nbml.train\(ds\).*randomly initialised network is never used"):
        ds.embed()
    with pytest.raises(RuntimeError, match="could not load pretrained weights"):
        ds.embed(pretrained=True)
    with pytest.raises(NoBackboneError, match="no trained model"):
        nbml.train(ds, mode="head", quiet=True)
    assert ds.runs().empty                                       # nothing recorded, nothing computed
    assert not list(ds.home.glob("embeddings/*.f16"))


def test_embeddings_are_float16_on_disk_and_only_new_items_are_computed(trained, tmp_path):
    ds, model, _ = trained
    emb = ds.embed()
    assert emb.model_id == f"run-{model.run_id}@32" and "trained on this project" in emb.source
    assert emb.computed == 36 and len(emb) == 36 and sorted(emb.ids) == ds.query_ids(usable_only=True)
    file = ds.home / "embeddings" / f"run-{model.run_id}@32.f16"
    dim = model.net[0].num_features
    assert file.stat().st_size == 36 * dim * 2                  # float16: 2 bytes a number
    assert emb.raw.dtype == np.float16 and emb.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1, atol=1e-5)

    # the stored vectors are the body's pooled features (to float16 precision)
    item = ds.item(int(emb.ids[0]))
    with torch.no_grad():
        x = image_kind.square(model, item["path"])[None]
        from nbml.data import normalize
        body = model.net[0].eval()(normalize(torch.from_numpy(x), torch.tensor(model.config["mean"]), torch.tensor(model.config["std"])))
    assert np.allclose(emb.features[0], body[0].numpy(), rtol=2e-2, atol=2e-2)

    again = ds.embed()
    assert again.computed == 0 and np.array_equal(again.raw, emb.raw)

    more = make_images(tmp_path / "more", per_class=1, seed=3)
    added = ds.add_images(more).added
    grown = ds.embed()
    assert grown.computed == 3 and len(grown) == 39 and set(added) <= set(grown.ids)
    assert file.stat().st_size == 39 * dim * 2

    # a removed item leaves; an item whose file is gone before it was embedded has none, and says why
    ds.remove(added[0])
    late = ds.add_images(make_images(tmp_path / "late", per_class=1, seed=5)).added
    (tmp_path / "late" / "red" / "0.png").unlink()
    lost = int(ds.df.loc[ds.df["path"] == str(tmp_path / "late" / "red" / "0.png"), "id"].iloc[0])
    ds2 = nbml.Dataset(ds.path)            # a fresh view of the same project file
    other = ds2.embed(model)               # the same body as the default: the same id, the same rows
    assert other.model_id == emb.model_id and other.computed == 2 and other.missing == [lost]
    assert added[0] not in set(other.ids) and set(late) - {lost} <= set(other.ids)
    assert any("no longer exists" in w for w in other.warnings)
    with pytest.raises(KeyError, match=f"item {added[0]} has no embedding"):
        ds2.similar(added[0])
    with pytest.raises(KeyError, match=f"item {lost} has no embedding.*no longer exists"):
        ds2.similar(lost)
    near = ds2.similar(int(emb.ids[0]), k=3)
    assert near.attrs["embeddings"] == f"run-{model.run_id}@32" and len(near) == 3
    ds2.close()


def test_weights_file_backbone_and_pca_map(ds, tmp_path):
    import timm
    from safetensors.torch import save_file
    body = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, str(weights))
    emb = ds.embed(arch="test_resnet", weights=weights, size=32)
    assert emb.model_id.startswith("file:test_resnet-") and emb.model_id.endswith("@32")
    assert str(weights.resolve()) in emb.source and emb.computed == 36
    from nbml.analysis import embedding_map
    m = embedding_map(ds, embeddings=emb)
    assert list(m.columns[:3]) == ["id", "x", "y"] and len(m) == 36 and m["x"].std() > 0
    assert m.attrs["embeddings"] == emb.model_id


# -- looking alike ------------------------------------------------------------------------------------------------
def test_similar_finds_the_same_colour_among_unlabelled_items(trained, tmp_path):
    ds, _, images = trained
    flat = flat_unlabelled(tmp_path / "unl")
    ds.add_images(flat, label_from=None)
    reds = ds.query_ids(label="red")[:3]
    found = ds.similar(reds, k=6, labelled=False)
    assert len(found) == 6 and found["label"].isna().all() and not set(found["id"]) & set(reds)
    assert [colour_of(p) for p in found["path"]] == ["red"] * 6
    assert found["similarity"].is_monotonic_decreasing
    assert found.attrs["embeddings"].startswith("run-") and found.attrs["query"] == "the mean of 3 items"

    one = ds.similar(reds[0], k=5)
    assert reds[0] not in set(one["id"]) and sum(colour_of(p) == "red" for p in one["path"]) >= 4

    path = images / "green" / "0.png"                       # an item's own file: that item is left out
    own_id = int(ds.df.loc[ds.df["path"] == str(path), "id"].iloc[0])
    by_path = ds.similar(path, k=5)
    assert own_id not in set(by_path["id"]) and [colour_of(p) for p in by_path["path"]].count("green") >= 4
    by_bytes = ds.similar(path.read_bytes(), k=5)
    assert list(by_bytes["id"]) == list(by_path["id"])
    by_pil = ds.similar(Image.open(path), k=5, label="green")
    assert set(by_pil["label"]) == {"green"}


def test_similar_reuses_loaded_embeddings_while_the_store_is_unchanged(trained, tmp_path):
    ds, _, _ = trained
    cache = ds._embedding_cache
    first = ds.similar(1, k=5)
    assert (cache.loads, cache.updates) == (1, 0)
    held = ds.embed()                                   # the loaded vectors, not a reload
    assert held.computed == 0 and (cache.loads, cache.updates) == (1, 0)
    hits = cache.hits
    assert list(ds.similar(1, k=5)["id"]) == list(first["id"]) and cache.hits == hits + 1

    # labels and splits are read afresh, the vectors are not: the result, and the label= filter, are current
    target = int(first["id"].iloc[0])
    ds.set_label(target, "purple")
    ds.set_split(target, "test")
    now = ds.similar(1, k=5).set_index("id")
    assert (now.loc[target, "label"], now.loc[target, "split"]) == ("purple", "test")
    assert ds.similar(1, k=5, label="purple")["id"].tolist() == [target]
    ds.undo()                                           # the split goes back
    assert ds.similar(1, k=5).set_index("id").loc[target, "split"] == first.set_index("id").loc[target, "split"]
    assert (cache.loads, cache.updates) == (1, 0)
    assert held.frame.set_index("id").loc[target, "label"] != "purple"      # what a caller holds never changes

    # new items are embedded and found, only they are computed; a removed item leaves, undo brings it back
    added = ds.add_images(make_images(tmp_path / "more", per_class=2, seed=3), label_from=None).added
    found = ds.similar(added[0], k=50)
    assert set(added[1:]) <= set(found["id"]) and len(found) == 36 + 6 - 1
    assert (cache.loads, cache.updates) == (1, 1) and ds.embed().computed == 0
    ds.remove(added[1])
    assert added[1] not in set(ds.similar(added[0], k=50)["id"])
    with pytest.raises(KeyError, match=f"item {added[1]} has no embedding"):
        ds.similar(added[1])
    ds.undo()
    assert added[1] in set(ds.similar(added[0], k=50)["id"])
    assert (cache.loads, cache.updates) == (1, 3)

    # changes made through another handle on the same file (another kernel, the server) are seen too
    other = nbml.Dataset(ds.path)
    other.set_label(added[2], "blue")
    other.mark_unusable(added[3])
    other.close()
    seen = ds.similar(added[0], k=50).set_index("id")
    assert seen.loc[added[2], "label"] == "blue" and added[3] not in seen.index

    # and the answer is the one a fresh load gives
    from nbml.analysis import similar
    fresh = similar(ds, added[0], k=50, embeddings=embeddings_module.embed(ds, progress=False))
    cached = ds.similar(added[0], k=50)
    assert cached[["id", "label", "split", "path"]].equals(fresh[["id", "label", "split", "path"]])
    assert np.allclose(cached["similarity"], fresh["similarity"])
    assert cache.loads == 1


def test_duplicates_finds_reencoded_copies_and_cross_split_leaks(trained, tmp_path):
    ds = trained[0]
    pics = tmp_path / "pics"
    pics.mkdir()
    original = structured(1)
    original.save(pics / "original.png", compress_level=9)
    original.save(pics / "same_pixels.png", compress_level=1)       # other bytes, same pixels
    buf = io.BytesIO()
    original.save(buf, "JPEG", quality=60)                           # re-saved as JPEG at another quality
    (pics / "copy.jpg").write_bytes(buf.getvalue())
    structured(2).save(pics / "unrelated.png")
    ds.add_images(pics, label_from=None)
    ids = {p.stem: int(ds.df.loc[ds.df["path"] == str(p), "id"].iloc[0]) for p in pics.iterdir()}
    ds.set_label([ids["original"], ids["copy"], ids["same_pixels"]], "red")
    ds.set_split(ids["original"], "train")
    ds.set_split(ids["copy"], "valid")

    dups = ds.duplicates()
    pairs = {frozenset((a, b)): row for a, b, row in zip(dups["id_a"], dups["id_b"], dups.to_dict("records"))}
    assert set(pairs) == {frozenset((ids["original"], ids["copy"])),
                          frozenset((ids["original"], ids["same_pixels"])),
                          frozenset((ids["copy"], ids["same_pixels"]))}
    assert pairs[frozenset((ids["original"], ids["same_pixels"]))]["kind"] == "exact"
    leak = pairs[frozenset((ids["original"], ids["copy"]))]
    assert leak["kind"] == "near" and leak["leak"] and leak["pixel_similarity"] > 0.99
    assert not pairs[frozenset((ids["original"], ids["same_pixels"]))]["leak"]     # no split on one side
    assert dups["kind"].iloc[0] == "exact"
    assert dups.attrs["embeddings"].startswith("run-") and "pixels only" in dups.attrs["note"]


def test_duplicates_work_on_pixels_before_any_model(ds, tmp_path):
    img = tmp_path / "images" / "red" / "0.png"
    Image.open(img).save(tmp_path / "again.png", compress_level=0)
    new = ds.add_images([tmp_path / "again.png"], label_from=None).added[0]
    dups = ds.duplicates()
    first = int(ds.df.loc[ds.df["path"] == str(img), "id"].iloc[0])
    assert len(dups) == 1 and {dups["id_a"][0], dups["id_b"][0]} == {new, first} and dups["kind"][0] == "exact"
    assert dups.attrs["embeddings"] is None and "pixel comparison only" in dups.attrs["backbone"]


def test_outliers_rank_the_odd_one_first(trained, tmp_path):
    ds = trained[0]
    odd = tmp_path / "odd.png"
    structured(5, size=32).save(odd)
    odd_id = ds.add_images([odd], label_from=None).added[0]
    out = ds.outliers()
    assert len(out) == 37 and out["score"].is_monotonic_decreasing
    assert odd_id in set(out["id"].head(3))
    assert ds.outliers(n=5, labelled=False)["id"].tolist() == [odd_id]


# -- what looks wrong ---------------------------------------------------------------------------------------------
def test_label_issues_flags_flipped_labels_among_the_items_the_model_trained_on(tmp_path):
    folder = make_images(tmp_path / "images", per_class=20)
    ds = nbml.Dataset(tmp_path / "p.nbml")
    ds.add_images(folder)
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(ds.query_ids(), 6, replace=False).tolist())
    truth = ds.df.set_index("id")["label"]
    for i in flipped:
        ds.set_label(i, OTHER[truth[i]])
    model = nbml.train(ds, **FAST)              # trained on every label, mistakes included, as a user would
    trained_on = set(ds.snapshot_items(model.config["snapshot_id"]).query("split == 'train'")["id"])
    assert flipped & trained_on

    by_model = ds.label_issues(model)           # every labelled item is checked, those it trained on included
    found = set(by_model["id"])
    assert by_model.attrs["unchecked"] == [] and by_model.attrs["n_checked"] == 60
    assert flipped & trained_on <= found
    assert len(found & flipped) / len(found) >= 0.6 and len(found & flipped) / len(flipped) >= 0.66
    assert list(by_model.columns[:4]) == ["id", "label", "suggested", "score"]
    assert by_model["score"].is_monotonic_decreasing
    for row in by_model[by_model["id"].isin(flipped)].itertuples():
        assert row.suggested == truth[row.id]                 # the true colour is suggested back
    method = by_model.attrs["method"]
    assert "cross-validated" in method and f"run {model.run_id}" in method and "pixel" in method
    assert by_model.attrs["embeddings"] == f"run-{model.run_id}@32"

    issues = ds.label_issues()                  # without a model: the latest run's body, the same probabilities
    assert issues["id"].tolist() == by_model["id"].tolist() and np.allclose(issues["score"], by_model["score"])
    ds.close()


def test_product_of_experts_keeps_items_without_pixels():
    from nbml.analysis import _product_of_experts
    emb = np.array([[0.6, 0.4], [0.7, 0.3]])
    pixels = np.array([[0.6, 0.4], [np.nan, np.nan]])
    probs, both = _product_of_experts(emb, pixels)
    assert both == 1 and np.allclose(probs, [[0.36 / 0.52, 0.16 / 0.52], [0.7, 0.3]])
    same, none = _product_of_experts(emb, None)
    assert same is emb and none == 0


def test_a_pixel_head_far_weaker_than_the_embeddings_is_left_out():
    from nbml.analysis import _why_not_pixels
    y = np.arange(20) % 2
    right, wrong = np.eye(2)[y] * 0.8 + 0.1, np.eye(2)[1 - y] * 0.8 + 0.1
    half = np.where((np.arange(20) < 10)[:, None], right, wrong)       # pixels agree with half the labels
    assert _why_not_pixels(right, right, y) is None
    assert "agrees with the labels on 50% of items, the embeddings on 100%" in _why_not_pixels(right, half, y)
    assert _why_not_pixels(half, half, y) is None                     # as weak as the embeddings: still evidence
    assert _why_not_pixels(right, None, y) == "too few items to cross-validate on"


# -- what to label next -------------------------------------------------------------------------------------------
def test_suggest_strategies(trained, tmp_path):
    ds, model, _ = trained
    flat = flat_unlabelled(tmp_path / "unl", per_class=8)
    ambiguous = tmp_path / "ambiguous"
    ambiguous.mkdir()
    for n in range(3):     # half red, half green: the model cannot be sure
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[:, :16], arr[:, 16:] = COLOURS["red"], COLOURS["green"]
        arr = np.clip(arr.astype(int) + np.random.default_rng(n).integers(-20, 20, arr.shape), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(ambiguous / f"mixed_{n}.png")
    ds.add_images(flat, label_from=None)
    mixed = set(ds.add_images(ambiguous, label_from=None).added)
    unlabelled = set(ds.query_ids(labelled=False))

    for strategy in ("margin", "entropy", "least_confident"):
        top = ds.suggest(n=5, strategy=strategy)
        assert list(top.columns[:2]) == ["id", "score"] and len(top) == 5
        assert set(top["id"]) <= unlabelled and top["score"].is_monotonic_decreasing
        assert len(mixed & set(top["id"].head(4))) >= 2, (strategy, top)
        assert top.attrs["strategy"] == strategy and top.attrs["embeddings"].startswith("run-")
    with_model = ds.suggest(model, n=5)
    assert set(with_model["id"]) <= unlabelled and "run" in with_model.attrs["scored_by"]

    rand = ds.suggest(n=10, strategy="random", seed=1)
    assert len(set(rand["id"])) == 10 and set(rand["id"]) <= unlabelled
    assert list(rand["id"]) != list(ds.suggest(n=10, strategy="random", seed=2)["id"])

    diverse = ds.suggest(n=6, strategy="diverse")
    margin = ds.suggest(n=6, strategy="margin")
    assert len(set(diverse["id"])) == 6 and set(diverse["id"]) <= unlabelled
    emb = ds.embed()

    def closest_pair(ids):
        v = emb.vectors[emb.positions(list(ids))]
        return float((1 - v @ v.T)[np.triu_indices(len(ids), 1)].min())
    # margin takes the three near-identical mixed images; diverse takes one of them and no two alike
    assert len(mixed & set(margin["id"])) == 3 and len(mixed & set(diverse["id"])) >= 1
    assert closest_pair(diverse["id"]) > 2 * closest_pair(margin["id"])

    everything = ds.suggest(n=500)
    assert len(everything) == len(unlabelled)
    ds.set_label(sorted(unlabelled), "red")
    done = ds.suggest(n=5)
    assert done.empty and "every usable item is labelled" in done.attrs["message"]


def test_suggest_diverse_works_with_one_class_labelled(trained):
    ds = trained[0]
    ds.set_label(ds.query_ids(label="green") + ds.query_ids(label="blue"), None)
    with pytest.raises(ValueError, match="at least two classes.*diverse"):
        ds.suggest(n=3)
    picks = ds.suggest(n=3, strategy="diverse")
    assert len(picks) == 3 and "spread" in picks.attrs["scored_by"]
    assert {colour_of(p) for p in picks["path"]} == {"green", "blue"}     # spread over both unlabelled colours


# -- head mode ----------------------------------------------------------------------------------------------------
def test_head_mode_trains_on_embeddings_and_makes_a_full_model(trained):
    ds, first, images = trained
    seen = []
    model = nbml.train(ds, mode="head", on_event=seen.append)
    assert isinstance(model, nbml.Model) and isinstance(model.net[1], torch.nn.Linear)
    assert model.config["head"] == {"type": "linear"} and model.config["body"] == f"run-{first.run_id}@32"
    assert [e.kind for e in seen][0] == "train_started" and seen[-1].kind == "train_ended"
    run = ds.runs().iloc[-1]
    assert run["status"] == "completed" and run["params"]["mode"] == "head"
    assert run["params"]["embeddings"] == f"run-{first.run_id}@32" and run["snapshot_id"]
    assert model.evaluate().accuracy >= 0.8
    img = images / "blue" / "2.png"
    assert model.predict(img).label == "blue"
    assert ds.embed(model).computed == 0                 # the head's body shares its embeddings

    loaded = nbml.load(run["model_path"], dataset=ds)
    assert loaded.predict(img).probabilities == pytest.approx(model.predict(img).probabilities, abs=1e-5)
    assert len(loaded.losses()) == 36 and set(loaded.probabilities([1, 2]).columns) >= {"id", "blue"}

    handle = nbml.train(ds, mode="head", background=True, quiet=True)
    assert handle.wait(60).run_id == handle.run_id
    with pytest.warns(UserWarning, match="epochs ignored"):
        nbml.train(ds, mode="head", epochs=3, quiet=True)
    with pytest.raises(ValueError, match="mode must be"):
        nbml.train(ds, mode="heads")


def test_head_mode_reuses_loaded_embeddings_and_body(trained):
    ds, first, images = trained
    cache = ds._embedding_cache
    cold = nbml.train(ds, mode="head", quiet=True)             # nothing loaded yet: reads the labelled items' rows
    assert not cache.holds(f"run-{first.run_id}@32") and cache.loads == 0
    ds.similar(1, k=3)                                        # loads every item's embeddings for this backbone
    loads = cache.loads
    hits = cache.hits
    warm = nbml.train(ds, mode="head", quiet=True)
    assert cache.loads == loads and cache.hits == hits + 1    # no second read of the vectors
    assert warm.config["snapshot_id"] == cold.config["snapshot_id"]
    img = images / "red" / "1.png"
    assert warm.predict(img).probabilities == pytest.approx(cold.predict(img).probabilities, abs=1e-5)
    # each model owns its body: changing one leaves the cached body and the next model alone
    with torch.no_grad():
        next(warm.net[0].parameters()).zero_()
    again = nbml.train(ds, mode="head", quiet=True)
    assert again.predict(img).probabilities == pytest.approx(cold.predict(img).probabilities, abs=1e-5)
    # a label changed since: the warm path fits on the current labels
    ds.set_label(ds.query_ids(label="red")[0], "blue")
    relabelled = nbml.train(ds, mode="head", quiet=True)
    assert relabelled.config["snapshot_id"] != cold.config["snapshot_id"]
    assert ds.runs().iloc[-1]["params"]["n_train"] + ds.runs().iloc[-1]["params"]["n_valid"] == 36


# -- seeing the data and bad input ---------------------------------------------------------------------------------
def test_stats_counts_and_warnings(ds, tmp_path):
    ds.add_images(make_images(tmp_path / "u", per_class=1, seed=4), label_from=None)
    ds.set_label(ds.query_ids(label="blue")[3:], None)
    ds.set_split(ds.query_ids(label="red")[:4], "valid")
    s = ds.stats()
    assert s.labelled == 27 and s.unlabelled == 12
    assert s.counts.loc["blue", "labelled"] == 3 and s.counts.loc["red", "valid"] == 4
    assert s.counts.loc["red", "unassigned"] == 8
    assert any("'blue' has only 3" in w for w in s.warnings)
    from nbml.widgets.chart import Chart
    assert isinstance(s.chart, Chart) and "text/plain" in s._repr_mimebundle_()
    assert "warning:" in repr(s)
    empty = nbml.Dataset(tmp_path / "empty.nbml").stats()
    assert empty.labelled == 0 and "no items yet" in empty.warnings[0]


def test_bad_inputs_give_clear_messages(trained, tmp_path):
    ds, model, _ = trained
    empty = nbml.Dataset(tmp_path / "empty.nbml")
    for call in (empty.embed, empty.suggest, empty.duplicates, empty.outliers, empty.label_issues,
                 lambda: empty.similar(1)):
        with pytest.raises(ValueError, match="no (usable )?items"):
            call()

    with pytest.raises(ValueError, match="strategy must be one of"):
        ds.suggest(strategy="smart")
    with pytest.raises(TypeError, match="item id, a list of ids"):
        ds.similar([object()])
    with pytest.raises(KeyError, match="item 9999 has no embedding"):
        ds.similar(9999)
    with pytest.raises(FileNotFoundError, match="not a file"):
        ds.similar(tmp_path / "nope.png")
    with pytest.raises(TypeError, match="nbml.Model"):
        ds.label_issues(model="run-1")

    ds.add_images(make_images(tmp_path / "u", per_class=1, seed=9), label_from=None)
    # a class with one item cannot be checked: a warning, and it is listed
    lone = ds.query_ids(label="red")[0]
    ds.set_label(lone, "purple")
    with pytest.warns(UserWarning, match="single labelled item"):
        issues = ds.label_issues()
    assert issues.attrs["unchecked"] == [lone]
    # a model that does not know a class the dataset has
    with pytest.raises(ValueError, match=r"does not know the classes \['purple'\]"):
        ds.label_issues(model)
    with pytest.warns(UserWarning, match="does not know the classes"):
        ds.suggest(model, n=3)

    # a single class
    ds.set_label(ds.query_ids(labelled=True), "red")
    with pytest.raises(ValueError, match="at least two classes"):
        ds.label_issues()
    empty.close()


def test_suggest_never_fits_on_the_test_split(trained):
    ds, _, _ = trained
    ds.set_label(ds.df["id"].iloc[-5:].tolist(), None)                  # something to suggest
    labelled = ds.df[ds.df["label"].notna() & (ds.df["status"] == "ok")]
    test_ids = labelled["id"].iloc[:4].tolist()
    ds.set_split(test_ids, "test")
    out = ds.suggest(n=3)
    fitted = int(out.attrs["scored_by"].split("embeddings of ")[1].split()[0])
    assert fitted == len(labelled) - len(test_ids)
