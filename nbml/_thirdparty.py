"""Known warnings that other packages raise on import and that mean nothing to an nbml user: silenced where nbml
imports those packages, and nowhere else (nbml's own warnings, and anything else, still reach the user)."""
from __future__ import annotations

import contextlib
import warnings

# (category, regular expression matched against the start of the message)
KNOWN_IMPORT_WARNINGS = [
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),            # fastai.layers decorates with it
    (DeprecationWarning, r"The 'mode\.chained_assignment' option is deprecated"),   # fastai.tabular.core, pandas 3
]


@contextlib.contextmanager
def known_warnings_silenced():
    with warnings.catch_warnings():
        for category, message in KNOWN_IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def import_fastai() -> None:
    """Import the parts of fastai nbml trains with (3-4 s the first time), without their import-time warnings."""
    with known_warnings_silenced():
        import fastai.basics  # noqa: F401
        import fastai.callback.fp16  # noqa: F401
        import fastai.callback.progress  # noqa: F401
        import fastai.callback.schedule  # noqa: F401
