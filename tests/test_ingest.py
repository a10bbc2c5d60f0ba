"""`Dataset.add_images` against bad and unusual image files, all generated here in tmp_path.

Every bad file must be reported in `skipped` with a specific reason, every good file must be added even when
it sits beside bad ones, and the decoded picture (`open_rgb`) must be plain RGB with the expected colours.
"""
import io
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import nbml
from nbml._imaging import ImageError, open_rgb
from nbml.data import check_files

RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)
NON_UTF8 = b"bad\xff.png"

needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")


# -- generated corpus -------------------------------------------------------------------------------------------
def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def solid(rgb, size=(8, 8), fmt="PNG") -> bytes:
    return encoded(Image.new("RGB", size, rgb), fmt)


def noisy(fmt: str, size=64, seed=0) -> bytes:
    """An image large enough that cutting it in half really loses pixel data."""
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encoded(Image.fromarray(arr), fmt)


def truncated(fmt: str) -> bytes:
    data = noisy(fmt)
    return data[: len(data) // 2]


HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not found</body></html>\n"
TEXT = b"this is a plain text file that someone renamed to .png\n"


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def close_to(actual, expected, tol=0):
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


def reasons(report) -> dict[str, str]:
    return {os.path.basename(p): r for p, r in report.skipped}


@pytest.fixture
def project(tmp_path):
    d = nbml.Dataset(tmp_path / "project" / "p.nbml")   # beside, never inside, the image folders
    yield d
    d.close()


def added_paths(ds) -> set[str]:
    return set(ds.df["path"])


# -- files that are not usable images ----------------------------------------------------------------------------
BAD_FILES = [
    ("empty.jpg", lambda: b"", "empty file (0 bytes)"),
    ("cut.jpg", lambda: truncated("JPEG"), "truncated or corrupt image data"),
    ("cut.png", lambda: truncated("PNG"), "truncated or corrupt image data"),
    ("page.jpg", lambda: HTML, "HTML page"),
    ("words.png", lambda: TEXT, "holds text"),
]


@pytest.mark.parametrize("name, make, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_skipped_with_specific_reason(project, tmp_path, name, make, reason):
    folder = tmp_path / "imgs"
    bad = write(folder / name, make())
    good = write(folder / "good.png", solid(RED))
    report = project.add_images(folder, label_from=None)
    assert report.skipped == [(str(bad), report.skipped[0][1])]
    assert reason in report.skipped[0][1]
    assert len(report.added) == 1 and report.duplicates == []
    assert added_paths(project) == {str(good)}
    with pytest.raises(ImageError, match=re.escape(reason)):
        open_rgb(bad)


def test_truncated_jpeg_reason_says_truncated(project, tmp_path):
    bad = write(tmp_path / "cut.jpg", truncated("JPEG"))
    report = project.add_images(bad)
    assert report.added == [] and len(project) == 0
    (path, reason), = report.skipped
    assert path == str(bad) and "truncated" in reason


def test_non_image_extensions_are_skipped(project, tmp_path):
    folder = tmp_path / "imgs"
    write(folder / "notes.txt", b"some notes")
    write(folder / "README", b"no extension")
    write(folder / "labels.csv", b"a,b\n")
    write(folder / ".hidden.png", b"hidden files are ignored, not reported")
    good = write(folder / "ok.png", solid(BLUE))
    report = project.add_images(folder, label_from=None)
    assert reasons(report) == {
        "notes.txt": "not an image file extension (.txt)",
        "README": "not an image file extension (none)",
        "labels.csv": "not an image file extension (.csv)",
    }
    assert added_paths(project) == {str(good)}


def test_folder_named_like_an_image_is_reported_and_not_entered(project, tmp_path):
    folder = tmp_path / "imgs"
    inside = write(folder / "folder.jpg" / "inner.png", solid(GREEN))
    good = write(folder / "ok.png", solid(BLUE))
    report = project.add_images(folder, label_from=None)
    assert report.skipped == [(str(folder / "folder.jpg"), "a folder named like an image file; not entered")]
    assert added_paths(project) == {str(good)}
    assert str(inside) not in added_paths(project)


# -- unreadable paths and symlink loops --------------------------------------------------------------------------
def test_dangling_symlink_is_reported_as_broken_link(project, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    os.symlink(folder / "gone.jpg", folder / "x.jpg")
    good = write(folder / "ok.png", solid(RED))
    report = project.add_images(folder, label_from=None)
    assert report.skipped == [(str(folder / "x.jpg"), "file not found (deleted, or a broken link)")]
    assert added_paths(project) == {str(good)}
    # Named directly, the same link gives the same reason.
    direct = project.add_images(folder / "x.jpg")
    assert direct.skipped == [(str(folder / "x.jpg"), "file not found (deleted, or a broken link)")]


@needs_non_root
def test_permission_denied_file_is_skipped(project, tmp_path):
    folder = tmp_path / "imgs"
    locked = write(folder / "locked.png", solid(RED))
    good = write(folder / "ok.png", solid(BLUE))
    locked.chmod(0)
    try:
        report = project.add_images(folder, label_from=None)
    finally:
        locked.chmod(0o644)
    assert report.skipped == [(str(locked), "unreadable: permission denied")]
    assert added_paths(project) == {str(good)}


@pytest.mark.timeout(30)
def test_symlink_loops_terminate_and_are_reported(project, tmp_path):
    root = tmp_path / "imgs"
    good = write(root / "cls" / "ok.png", solid(RED))
    os.symlink(root / "cls" / "loop.jpg", root / "cls" / "loop.jpg")     # a link to itself
    os.symlink(root, root / "cls" / "back")                               # a folder link to its own ancestor
    os.symlink(root / "cls", root / "cls" / "here")                       # ... and to its own folder
    report = project.add_images(root)
    assert reasons(report) == {
        "loop.jpg": "symlink loop",
        "back": "symlink loop: this folder was already visited",
        "here": "symlink loop: this folder was already visited",
    }
    assert report.added and len(report.added) == 1 and report.duplicates == []
    assert added_paths(project) == {str(good)}
    assert project.item(report.added[0])["label"] == "cls"
    # The self-link named directly is reported too, not raised.
    direct = project.add_images(root / "cls" / "loop.jpg")
    assert direct.skipped == [(str(root / "cls" / "loop.jpg"), "symlink loop")]
    with pytest.raises(ImageError, match="symlink loop"):
        open_rgb(root / "cls" / "loop.jpg")


def test_missing_source_is_reported(project, tmp_path):
    report = project.add_images(tmp_path / "no-such-folder")
    assert report.skipped == [(str(tmp_path / "no-such-folder"), "file not found (deleted, or a broken link)")]
    assert report.added == [] and len(project) == 0


# -- decompression bombs -----------------------------------------------------------------------------------------
def test_decompression_bomb_limit(tmp_path):
    big = write(tmp_path / "imgs" / "big.png", solid(GREEN, size=(200, 200)))
    small = write(tmp_path / "imgs" / "small.png", solid(RED, size=(50, 50)))   # 2,500 pixels: under the limit
    with nbml.Dataset(tmp_path / "strict.nbml", max_pixels=10_000) as strict:
        report = strict.add_images(tmp_path / "imgs", label_from=None)
        (path, reason), = report.skipped
        assert path == str(big)
        assert "decompression bomb" in reason and "200x200" in reason and "10,000" in reason
        assert added_paths(strict) == {str(small)}
    with pytest.raises(ImageError, match="decompression bomb"):
        open_rgb(big, max_pixels=10_000)
    with nbml.Dataset(tmp_path / "default.nbml") as relaxed:
        report = relaxed.add_images(big, label_from=None)
        assert report.skipped == [] and len(report.added) == 1
        row = relaxed.item(report.added[0])
        assert (row["width"], row["height"]) == (200, 200)


# -- unusual but valid images: added, decoded to RGB with the right colours ----------------------------------------
def test_exif_orientation_is_applied(project, tmp_path):
    # Stored 40 wide x 20 high, in quadrants; Orientation=6 means "rotate 90 degrees clockwise to display".
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:10, :20], arr[10:, :20], arr[:10, 20:], arr[10:, 20:] = RED, GREEN, BLUE, YELLOW
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write(tmp_path / "imgs" / "rotated.jpg", encoded(Image.fromarray(arr), "JPEG", quality=95, exif=exif))
    assert Image.open(path).size == (40, 20)        # the fixture really is stored landscape

    report = project.add_images(path, label_from=None)
    (item_id,) = report.added
    row = project.item(item_id)
    assert (row["width"], row["height"]) == (20, 40)

    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (20, 40)
    # Clockwise: the stored left column becomes the top row, the stored bottom row becomes the left column.
    assert close_to(img.getpixel((5, 10)), GREEN, 40)
    assert close_to(img.getpixel((15, 10)), RED, 40)
    assert close_to(img.getpixel((5, 30)), YELLOW, 40)
    assert close_to(img.getpixel((15, 30)), BLUE, 40)


def _cmyk_jpeg():
    return encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)   # pure red in CMYK


def _gray16(value=32768):
    arr = np.full((8, 8), value, np.uint16)
    arr[0, 0] = 65535
    arr[0, 1] = 0
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    return encoded(img, "PNG")


def _palette_transparent():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))   # index 0 black (made transparent), index 1 red
    for x in range(4, 8):
        for y in range(8):
            img.putpixel((x, y), 1)
    return encoded(img, "PNG", transparency=0)


def _rgba():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))                    # fully transparent black
    for y in range(8):
        img.putpixel((4, y), (0, 0, 255, 255))                        # opaque blue
        img.putpixel((6, y), (0, 0, 0, 128))                          # half-transparent black
    return encoded(img, "PNG")


def _gray8():
    return encoded(Image.new("L", (8, 8), 100), "PNG")


# name, bytes, mode Pillow opens it in, [(pixel, expected RGB, tolerance)]
UNUSUAL = [
    ("cmyk.jpg", _cmyk_jpeg, "CMYK", [((4, 4), RED, 8)]),
    ("gray16.png", _gray16, "I;16", [((4, 4), (128, 128, 128), 1), ((0, 0), WHITE, 0), ((1, 0), (0, 0, 0), 0)]),
    ("palette.png", _palette_transparent, "P", [((1, 1), WHITE, 0), ((6, 1), RED, 0)]),
    ("rgba.png", _rgba, "RGBA", [((0, 0), WHITE, 0), ((4, 0), BLUE, 0), ((6, 0), (127, 127, 127), 1)]),
    ("gray.png", _gray8, "L", [((3, 3), (100, 100, 100), 0)]),
]


@pytest.mark.parametrize("name, make, mode, pixels", UNUSUAL, ids=[u[0] for u in UNUSUAL])
def test_unusual_modes_are_added_and_decoded_to_rgb(project, tmp_path, name, make, mode, pixels):
    path = write(tmp_path / "imgs" / name, make())
    assert Image.open(path).mode == mode            # the fixture really is in the unusual mode
    report = project.add_images(path, label_from=None)
    assert report.skipped == [] and len(report.added) == 1
    row = project.item(report.added[0])
    assert (row["width"], row["height"]) == (8, 8) and row["path"] == str(path)
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (8, 8)
    for xy, expected, tol in pixels:
        assert close_to(img.getpixel(xy), expected, tol), (xy, img.getpixel(xy), expected)


def test_16bit_scaling_does_not_depend_on_other_pixels(tmp_path):
    # The same 16-bit value must give the same 8-bit value whether or not the image also holds bright pixels.
    dark = np.full((4, 4), 200, np.uint16)              # 200 / 65535: nearly black
    mixed = dark.copy()
    mixed[0, 0] = 65535
    for name, arr in (("dark.png", dark), ("mixed.png", mixed)):
        write(tmp_path / name, encoded(Image.fromarray(arr), "PNG"))
    a = open_rgb(tmp_path / "dark.png").getpixel((2, 2))
    b = open_rgb(tmp_path / "mixed.png").getpixel((2, 2))
    assert a == b and max(a) <= 1


def test_animated_gif_uses_first_frame(project, tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, BLUE, GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as g:
        assert g.n_frames == 3
        g.seek(1)
        assert close_to(g.convert("RGB").getpixel((0, 0)), BLUE, 0)   # the frames really differ
    report = project.add_images(path, label_from=None)
    assert report.skipped == [] and len(report.added) == 1
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (8, 8)
    assert close_to(img.getpixel((4, 4)), RED, 0)


# -- file names that are not valid UTF-8 -------------------------------------------------------------------------
def test_non_utf8_file_name(project, tmp_path):
    folder = os.path.join(os.fsencode(str(tmp_path)), b"imgs", b"caf\xe9")    # a Latin-1 class folder too
    os.makedirs(folder)
    raw = os.path.join(folder, NON_UTF8)
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, solid(GREEN))
    finally:
        os.close(fd)

    report = project.add_images(tmp_path / "imgs")
    assert report.skipped == [] and report.duplicates == []
    (item_id,) = report.added

    shown = project.df.set_index("id").loc[item_id, "path"]
    assert "\ufffd" in shown and shown.endswith("bad\ufffd.png")
    shown.encode("utf-8")                               # valid UTF-8: no surrogate escapes leak out
    assert project.item(item_id)["label"] == "caf\ufffd"
    assert project.classes == ["caf\ufffd"]

    fs_path = project.file_path(item_id)
    assert isinstance(fs_path, str) and os.fsencode(fs_path) == raw
    with open(fs_path, "rb") as f:
        assert f.read() == solid(GREEN)
    assert close_to(open_rgb(fs_path).getpixel((0, 0)), GREEN, 0)


# -- duplicates ----------------------------------------------------------------------------------------------------
def test_duplicate_content_and_re_adding(project, tmp_path):
    folder = tmp_path / "imgs"
    png = solid(RED)
    a = write(folder / "a.png", png)
    b = write(folder / "b.png", png)
    c = write(folder / "c.png", solid(BLUE))
    write(folder / "notes.txt", b"x")

    first = project.add_images(folder, label_from=None)
    assert len(first.added) == 2
    ids = project.df.set_index("path")["id"]
    assert set(ids.index) == {str(a), str(c)}
    assert first.duplicates == [(str(b), ids[str(a)])]
    assert [p for p, _ in first.skipped] == [str(folder / "notes.txt")]

    again = project.add_images(folder, label_from=None)
    assert again.added == []
    assert sorted(again.duplicates) == sorted([(str(a), ids[str(a)]), (str(b), ids[str(a)]),
                                               (str(c), ids[str(c)])])
    assert [p for p, _ in again.skipped] == [str(folder / "notes.txt")]
    assert len(project) == 2


# -- everything at once, in ImageNet-style class folders ---------------------------------------------------------
def build_mixed_tree(root):
    """Class folders `cat` and `dog` holding good images among every kind of bad file."""
    good = {
        "cat/red.png": solid(RED),
        "cat/photo.jpg": noisy("JPEG", seed=1),
        "cat/anim.gif": encoded(Image.new("RGB", (8, 8), GREEN), "GIF"),
        "dog/blue.png": solid(BLUE),
        "dog/cmyk.jpg": _cmyk_jpeg(),
        "dog/gray16.png": _gray16(),
        "dog/deep/nested.png": solid(YELLOW),          # label is the top class folder
        "top.png": solid(WHITE),                        # not in a class folder: no label
    }
    for rel, data in good.items():
        write(root / rel, data)
    bad = {
        "cat/empty.jpg": (b"", "empty file (0 bytes)"),
        "cat/cut.jpg": (truncated("JPEG"), "truncated"),
        "cat/cut.png": (truncated("PNG"), "truncated"),
        "dog/page.jpg": (HTML, "HTML page"),
        "dog/words.png": (TEXT, "holds text"),
        "dog/notes.txt": (b"notes", "not an image file extension (.txt)"),
    }
    for rel, (data, _) in bad.items():
        write(root / rel, data)
    write(root / "dog" / "copy.png", solid(RED))                       # same bytes as cat/red.png
    write(root / "cat" / "folder.jpg" / "inside.png", solid(GREEN))
    bad["cat/folder.jpg"] = (None, "folder named like an image")
    os.symlink(root / "cat" / "gone.jpg", root / "cat" / "x.jpg")
    bad["cat/x.jpg"] = (None, "broken link")
    os.symlink(root / "cat" / "loop.jpg", root / "cat" / "loop.jpg")
    bad["cat/loop.jpg"] = (None, "symlink loop")
    os.symlink(root, root / "dog" / "up")
    bad["dog/up"] = (None, "already visited")
    return good, bad


def test_good_files_added_among_bad_ones_in_one_call(project, tmp_path):
    root = tmp_path / "imagenet"
    good, bad = build_mixed_tree(root)
    report = project.add_images(root)            # label_from="folder" is the default

    skipped = {os.path.relpath(p, root): r for p, r in report.skipped}
    assert set(skipped) == set(bad)
    for rel, (_, reason) in bad.items():
        assert reason in skipped[rel], (rel, skipped[rel])

    df = project.df
    assert len(report.added) == len(good) == len(df)
    assert set(df["id"]) == set(report.added)
    assert {os.path.relpath(p, root) for p in df["path"]} == set(good)
    labels = {os.path.relpath(p, root): project.item(int(i))["label"] for p, i in zip(df["path"], df["id"])}
    assert labels == {rel: (rel.split("/")[0] if "/" in rel else None) for rel in good}
    assert project.classes == ["cat", "dog"]
    red_id = int(df.loc[df["path"] == str(root / "cat" / "red.png"), "id"].iloc[0])
    assert report.duplicates == [(str(root / "dog" / "copy.png"), red_id)]


def test_label_from_none_gives_no_labels(project, tmp_path):
    root = tmp_path / "imagenet"
    good, bad = build_mixed_tree(root)
    report = project.add_images(root, label_from=None)
    assert len(report.added) == len(good)
    assert len(report.skipped) == len(bad)
    df = project.df
    assert df["label"].isna().all() and df["label_source"].isna().all()
    assert project.classes == []


# -- add_dataframe -------------------------------------------------------------------------------------------------
def test_add_dataframe_with_a_missing_path(project, tmp_path):
    good = write(tmp_path / "imgs" / "good.png", solid(RED))
    missing = tmp_path / "imgs" / "missing.png"
    frame = pd.DataFrame({"file": [str(good), str(missing)], "kind": ["apple", "pear"]})
    report = project.add_dataframe(frame, path_col="file", label_col="kind")
    assert report.skipped == [(str(missing), "file not found (deleted, or a broken link)")]
    (item_id,) = report.added
    row = project.item(item_id)
    assert row["path"] == str(good) and row["label"] == "apple" and row["label_source"] == "import"
    assert project.classes == ["apple"]                 # the missing row's label made no class
    with pytest.raises(KeyError, match="nope"):
        project.add_dataframe(frame, path_col="nope")


# -- files deleted or changed after import --------------------------------------------------------------------------
def test_check_files_skips_deleted_and_changed_items(project, tmp_path):
    cls = tmp_path / "imgs" / "cls"
    files = {
        "kept.png": write(cls / "kept.png", solid(RED)),
        "touched.png": write(cls / "touched.png", solid(GREEN)),
        "deleted.png": write(cls / "deleted.png", solid(BLUE)),
        "changed.png": write(cls / "changed.png", solid(YELLOW)),
        "same_size.bmp": write(cls / "same_size.bmp", solid(RED, fmt="BMP")),
    }
    raw = os.path.join(os.fsencode(str(cls)), NON_UTF8)
    with open(raw, "wb") as f:
        f.write(solid(WHITE))
    report = project.add_images(tmp_path / "imgs")
    assert report.skipped == [] and len(report.added) == 6
    project.set_split(report.added, "train")
    ids = {os.path.basename(os.fsencode(project.file_path(i))): i for i in report.added}

    before = project.training_items(("train", "valid", "test"))
    kept, warnings = check_files(before)
    assert len(kept) == 6 and warnings == []

    st = os.stat(files["touched.png"])
    os.utime(files["touched.png"], (st.st_atime, st.st_mtime + 100))     # newer mtime, same content: kept
    files["deleted.png"].unlink()
    files["changed.png"].write_bytes(solid(YELLOW, size=(9, 9)))        # new content, new size
    new_bmp = solid(BLUE, fmt="BMP")
    assert len(new_bmp) == os.path.getsize(files["same_size.bmp"])
    files["same_size.bmp"].write_bytes(new_bmp)                         # new content, same size, new mtime
    st = os.stat(files["same_size.bmp"])
    os.utime(files["same_size.bmp"], (st.st_atime, st.st_mtime + 100))

    kept, warnings = check_files(project.training_items(("train", "valid", "test")))
    assert set(kept["id"]) == {ids[b"kept.png"], ids[b"touched.png"], ids[NON_UTF8]}
    assert len(warnings) == 3
    by_item = {int(w.split()[1]): w for w in warnings}
    assert "no longer exists" in by_item[ids[b"deleted.png"]]
    assert str(files["deleted.png"]) in by_item[ids[b"deleted.png"]]
    assert "changed since it was added" in by_item[ids[b"changed.png"]]
    assert "changed since it was added" in by_item[ids[b"same_size.bmp"]]
    assert all(w.startswith(f"item {i} skipped: ") for i, w in by_item.items())
