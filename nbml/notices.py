"""nbml's own warnings: one line that says what happened and what to do, without the file and source line a Python
warning normally shows (which reads like a crash to someone new). `NbmlWarning` is their category; the others
(`PretrainedWeightsWarning`, `QuantizationWarning`) derive from it. The one-line form is installed on `import nbml`
and applies to these categories only."""
from __future__ import annotations

import warnings

__all__ = ["NbmlWarning", "install"]


class NbmlWarning(UserWarning):
    """A warning from nbml, shown as one line: `NbmlWarning: what happened; what to do`."""


_ORIGINAL = warnings.formatwarning


def _one_line(message, category, filename, lineno, line=None):
    if isinstance(category, type) and issubclass(category, NbmlWarning):
        return f"{category.__name__}: {message}\n"
    return _ORIGINAL(message, category, filename, lineno, line)


def install() -> None:
    """Show nbml's warnings as one line (other packages' warnings are shown as before)."""
    if warnings.formatwarning is not _one_line:
        warnings.formatwarning = _one_line
