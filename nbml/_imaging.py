"""Decoding one image file into a plain RGB picture, with the bad-input rules shared by ingest, training and serving."""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 89_478_485   # Pillow's own default bomb limit (about 9,459 x 9,459)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
_SWAPS_AXES = frozenset({5, 6, 7, 8})   # EXIF orientations whose transpose turns the picture a quarter turn
_T = TypeVar("_T")


class ImageError(ValueError):
    """The bytes are not an image nbml can use; the message says why in one sentence."""


def _describe_non_image(head: bytes) -> str:
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image: the file is an HTML page saved with an image extension"
    if text.startswith((b"<?xml", b"<svg")):
        return "not an image: the file is XML or SVG, which nbml does not rasterise"
    try:
        head.decode("utf-8")
        return "not an image: the file holds text"
    except UnicodeDecodeError:
        return "not an image: Pillow does not recognise the format"


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images scaled into 0..255 instead of being clipped."""
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
    elif img.mode.startswith("I;16") or arr.max(initial=0) > 255:   # I;16 is 16-bit whatever its values
        arr = arr.astype(np.uint32) >> 8
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha over white, palette transparency honoured, 16-bit scaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    return img.convert("RGB")


def _decode_with(data: bytes, max_pixels: int, finish: Callable[[Image.Image], _T],
                 draft: tuple[int, int] | None = None) -> _T:
    """Apply every bad-input rule to `data`, decode every pixel of its first frame, and return `finish(image)`.

    Raises ImageError with a one-sentence reason for empty, non-image, truncated or oversized input; errors that
    `finish` raises count as corrupt data too.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(_describe_non_image(data[:512])) from None
        except Image.DecompressionBombError as e:
            raise ImageError(f"decompression bomb refused: {e}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"unreadable image header: {e}") from None
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"decompression bomb refused: {w}x{h} = {w * h:,} pixels is above the limit of "
                             f"{max_pixels:,} (raise max_pixels if the image is genuine)")
        if w == 0 or h == 0:
            raise ImageError("image has zero width or height")
        try:
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", draft)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            return finish(img)
        except Image.DecompressionBombError as e:
            raise ImageError(f"decompression bomb refused: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:   # IndexError: a GIF cut mid-frame
            raise ImageError(f"truncated or corrupt image data: {e}") from None


def _upright_rgb(img: Image.Image) -> Image.Image:
    ImageOps.exif_transpose(img, in_place=True)    # in place: no copy of an image that needs no turning
    return to_rgb(img)


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """The (width, height) `_upright_rgb` would give, without turning or converting the pixels."""
    if img.mode != "RGB":
        to_rgb(img.crop((0, 0, 1, 1)))             # the conversion must be possible; one pixel shows whether it is
    w, h = img.size
    return (h, w) if img.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_AXES else (w, h)


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
    """Encoded image bytes to an RGB Pillow image (EXIF orientation applied, first frame of animations).

    `draft` lets libjpeg decode a JPEG at a reduced scale that still covers that size (much faster).

    Raises ImageError with a one-sentence reason for empty, non-image, truncated or oversized input.
    """
    return _decode_with(data, max_pixels, _upright_rgb, draft)


def check(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The upright (width, height) of the image `decode(data, max_pixels)` would return, found under the same rules
    (every pixel is decoded, so truncation is caught) without building the RGB picture; raises the same ImageError.
    """
    return _decode_with(data, max_pixels, _upright_size)


def read_file(path: str | Path) -> bytes:
    """Bytes of a regular file, with ImageError (not OSError) for the ways a path can be unusable."""
    try:
        with open(path, "rb", buffering=0) as f:   # one read of the whole file: no buffer layer needed
            return f.read()
    except IsADirectoryError:
        raise ImageError("is a folder, not a file") from None
    except PermissionError:
        raise ImageError("unreadable: permission denied") from None
    except FileNotFoundError:
        raise ImageError("file not found (deleted, or a broken link)") from None
    except OSError as e:
        if e.errno == 40:   # ELOOP
            raise ImageError("symlink loop") from None
        raise ImageError(f"unreadable: {e.strerror or e}") from None


def open_rgb(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A path, encoded bytes or a Pillow image to an RGB Pillow image."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode(bytes(source), max_pixels)
    return decode(read_file(source), max_pixels)


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size` and centre-crop: uint8 array [size, size, 3]."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w == h == size:                 # e.g. a JPEG that draft() already decoded at the model's size
        return np.array(img)
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return np.array(img.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0))
