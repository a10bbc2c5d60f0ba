"""What computes embeddings: a `Backbone` (a body giving pooled features, its input size and normalisation, and
where it came from). Below the kinds, which make their own (WordLlama's for texts, a table's standardised rows), and
the embedding store and backbone choice of nbml.embeddings."""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Backbone", "NoBackboneError"]


class NoBackboneError(RuntimeError):
    """No backbone can compute embeddings: no pretrained weights and no trained model in the project."""


@dataclass
class Backbone:
    """What computes embeddings: a body returning pooled features, its input size and normalisation, and ids."""
    model_id: str              # the key of its embeddings in the store, e.g. "timm:resnet18.a1_in1k@224", "run-12@64"
    source: str                # the same in words, shown wherever its embeddings are used
    arch: str                  # the timm architecture of the body
    size: int                  # input size in pixels
    mean: tuple
    std: tuple
    weights: str               # where the body's weights came from: "timm:<tag>", "file:<path>", "run-12"
    loader: Callable = field(repr=False)   # () -> nn.Module (the body); called once, on first use
    device: object = None
    fresh: bool = False        # the loader builds a new module each call (so a copy needs no deepcopy)
    kind: str = "image"        # the kind of item it embeds (nbml.kinds)
    _body: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pretrained(self) -> bool:
        return self.model_id.startswith(("timm:", "file:", "wordllama:", "encoder:", "table:"))   # label-free

    def body(self):
        """The body module, loaded on first use, in eval mode on its device."""
        with self._lock:
            if self._body is None:
                from .nets import pick_device
                body = self.loader()
                self.device = pick_device(self.device) if not hasattr(self.device, "type") else self.device
                self._body = body.to(self.device).eval()
        return self._body

    def body_copy(self):
        """An independent copy of the body (on the CPU), for a new model to own."""
        if self.fresh and self._body is None:
            return self.loader().to("cpu")
        return copy.deepcopy(self.body()).to("cpu")

    def features(self, batch_u8: np.ndarray) -> np.ndarray:
        """Pooled features, float32 [B, D], for uint8 images [B, size, size, 3]."""
        import torch
        from .data import normalize
        body = self.body()
        mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(self.std, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            was_training = body.training
            body.eval()
            x = normalize(torch.from_numpy(np.ascontiguousarray(batch_u8)).to(self.device), mean, std)
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = body(x.contiguous(memory_format=torch.channels_last))
            else:
                out = body(x.contiguous())
            if was_training:
                body.train()
            return out.float().cpu().numpy()
