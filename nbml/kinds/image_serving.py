"""The server's image half: request bodies to encoded images, encoded images to uint8 squares, the ONNX runner.
The server picks a kind's serving module through the registry (`nbml.kinds.serving`, in `inputs_for`)."""
from __future__ import annotations

import asyncio
import hashlib

import numpy as np

from .._imaging import IMAGE_EXTENSIONS, ImageError, decode, read_file, to_square
from ..serving import v2
from ..serving.app import HTTPError, parse_json_images, parse_multipart

__all__ = ["Inputs"]

INLINE_DECODE_BYTES = 256 * 1024


class Inputs:
    """Encoded images (JPEG, PNG, ...) in; uint8 [N, size, size, 3] to the runner; the bytes themselves to the log."""
    kind = noun = "image"
    v2 = v2.IMAGE
    try_it = "-F file=@photo.jpg"
    file_extensions = IMAGE_EXTENSIONS     # what nbml.predict_files takes from a folder

    def __init__(self, folder, config: dict, settings):
        self.size, self.settings = int(config["size"]), settings

    def make_runner(self, folder, config: dict, device: str, threads: int | None):
        from ..serving.runners import make_runner
        return make_runner(folder, config, device, threads)

    def warm_up_batch(self) -> np.ndarray:
        return np.zeros((1, self.size, self.size, 3), np.uint8)

    def log_budget(self, log_images: int, log_image_bytes: int, **_) -> tuple[int, int]:
        """(inputs to keep in the log in all, largest one kept)."""
        return log_images, log_image_bytes

    def parse_predict(self, body: bytes, content_type: str) -> tuple[list[bytes], bool]:
        if content_type.startswith("multipart/form-data"):
            images = parse_multipart(body, content_type)
            return images, len(images) == 1
        if content_type.startswith("application/json"):
            return parse_json_images(body)
        if content_type.startswith(("image/", "application/octet-stream")):
            return [body], True
        raise HTTPError(400, "send the image as multipart/form-data (curl -F file=@photo.jpg), as JSON "
                             '{"image": "<base64>"}, or as the raw file with Content-Type image/*')

    def _prepare(self, data: bytes, digest: bool = True) -> tuple[np.ndarray, str | None]:
        """(pixels, the bytes' sha256 for the log, or None when `digest` is False: `digest()` takes it later)."""
        img = decode(data, self.settings.max_pixels, draft=(self.size, self.size))   # as the training cache does
        return to_square(img, self.size), hashlib.sha256(data).hexdigest() if digest else None

    def read_file(self, path) -> np.ndarray:
        """One image file to the runner's uint8 [size, size, 3] (nbml.predict_files); ImageError says why not."""
        return self._prepare(read_file(path), digest=False)[0]

    async def prepare(self, service, images: list[bytes]) -> tuple[np.ndarray, list[str | None]]:
        """(uint8 batch, sha256 per image or None); an image that cannot be decoded is a 400 that names it."""
        if len(images) == 1 and len(images[0]) <= INLINE_DECODE_BYTES and service.metrics.in_flight <= 1:
            # Nothing else is being served: decoding a small image here costs less than the hop to a thread, and
            # its hash can wait until the answer is written.
            try:
                results = [self._prepare(images[0], digest=False)]
            except ImageError as e:
                results = [e]
        else:
            loop = asyncio.get_running_loop()
            service.batcher.coming += 1
            try:
                digest = service.log is not None     # hashed here, in parallel, for the log
                results = await asyncio.gather(*[loop.run_in_executor(service.pool, self._prepare, d, digest)
                                                 for d in images], return_exceptions=True)
            finally:
                service.batcher.coming -= 1
        for i, r in enumerate(results):
            if isinstance(r, ImageError):
                where = f"image {i + 1} of {len(images)}: " if len(images) > 1 else ""
                raise HTTPError(400, f"{where}{r}")
            if isinstance(r, BaseException):
                raise r
        pixels = results[0][0][None] if len(results) == 1 else np.stack([r[0] for r in results])
        return pixels, [sha for _, sha in results]

    def digest(self, value: bytes) -> str:
        return hashlib.sha256(value).hexdigest()

    def payload(self, value: bytes, unit) -> bytes:
        """What the log keeps of an input: the encoded image as received."""
        return value
