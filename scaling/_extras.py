"""Optional dependencies, and the one line that says how to install a missing one.

``pip install scaling`` fits, predicts, plots and watches; training (sweeps, the
overoptimization pipeline, the ``transformers.Trainer`` callback) needs the ``train``
extra. Entry points that train call :func:`require` first, so a missing extra is one
:class:`~scaling.errors.MissingExtraError` line, not a traceback from a worker.
"""

from __future__ import annotations

import importlib.util
import sys

from .errors import MissingExtraError

#: module -> (what it is called, the extra that installs it)
EXTRAS = {
    "torch": ("PyTorch", "train"),
    "transformers": ("transformers", "train"),
    "submitit": ("submitit", "cluster"),
    "pyarrow": ("pyarrow", "parquet"),
}


def missing(*modules: str) -> list[str]:
    """The ``modules`` that cannot be imported (not installed, or blocked with ``sys.modules[name] = None``)."""
    out = []
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:
                out.append(name)
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def message(modules) -> str:
    """``this needs PyTorch and transformers: pip install 'scaling[train]'``."""
    modules = list(dict.fromkeys(modules))
    names = [EXTRAS.get(m, (m, None))[0] for m in modules]
    extras = sorted({EXTRAS[m][1] for m in modules if m in EXTRAS})
    what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    if not extras:
        return f"this needs {what}: pip install {' '.join(modules)}"
    return f"this needs {what}: pip install 'scaling[{','.join(extras)}]'"


def require(*modules: str) -> None:
    """Raise :class:`MissingExtraError` naming every module of ``modules`` that is missing.

    The message names all of ``modules`` (they come together in one extra), so
    ``require("torch", "transformers")`` says ``this needs PyTorch and transformers:
    pip install 'scaling[train]'`` even when only one of them is missing.
    """
    gone = missing(*modules)
    if gone:
        raise MissingExtraError(message(modules), name=gone[0])


def from_import_error(exc: ImportError) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for an ImportError of an optional module, else None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRAS:
        return None
    extra = EXTRAS[name][1]
    together = [m for m, (_, e) in EXTRAS.items() if e == extra]
    return MissingExtraError(message(together), name=name)
