"""What fitting returns: one frozen ``FitResult`` for every law.

A law (``scaling.laws.base.Law``) is a spec: its settings and the pure pieces of its
form. ``law.fit(data)`` fits a private copy and returns a ``FitResult``; the law
itself is never changed (lmfit's ``Model.fit`` -> ``ModelResult`` split). Values
from a paper (``ChinchillaLaw.from_params(...)``) and fits read from a file
(``scaling.load(path)``) are ``FitResult``s too, so one object predicts, reports,
allocates and saves whatever produced it.

>>> result = ChinchillaLaw(bootstrap=1000).fit(df)
>>> result.params_, result.se, result.ci, result.covariance
>>> result.predict(N=7e10, D=1.4e12); result.compute_optimal(1e24)
>>> result.law          # the spec that was fitted, with its settings
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .base import Law

#: methods of the fitted state that would change it: not reachable through a result
_MUTATORS = frozenset({"fit", "_fit", "_set_params", "_set_uncertainty", "_restore_extra", "_check_settings",
                       "_warn_after_fit", "_base_law"})


@contextlib.contextmanager
def warnings_at_caller(depth: int = 1):
    """Re-issue the warnings of the block so that each names the line that called the function using it
    (the fit or prediction a user wrote), not the stage of the procedure that raised it; ``depth``
    counts the frames from the function with the block up to that line."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:  # even when the block raises: its warnings explain the error
        for w in caught:
            # 1 this generator, 2 contextlib's __exit__, 3 the function with the block, 4 its caller
            warnings.warn(w.message, w.category, stacklevel=3 + depth)


class FitResult:
    """A fitted law: parameters, uncertainty, diagnostics, and what they predict. Frozen.

    Attributes ending in ``_`` are those the fit resolved (``params_``, ``stderr_``,
    ``ci_``, ``covariance_``, ``objective_``, ``fit_info_``, ``residuals_``,
    ``n_points_``, ``converged_``, ``data_range_`` and a law's own, e.g. ``profiles_``,
    ``per_size_``); reading one gives a copy. ``law`` is the spec that was fitted, and
    the law's settings read through (``result.level``, ``result.loss``). A law's own
    read-only methods (``peak``, ``coefficients``, ...) work on the result as well.
    """

    __slots__ = ("law", "_fitted", "_label")

    def __init__(self, law: "Law", fitted: "Law", label: str | None = None):
        object.__setattr__(self, "law", law)
        object.__setattr__(self, "_fitted", fitted)
        object.__setattr__(self, "_label", label)

    # ------------------------------------------------------------- frozen
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a FitResult is frozen: cannot set {name!r} (refit the law, result.law.fit(data), "
                             "for another result; result.labelled(...) names one for plots)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a FitResult is frozen: cannot delete {name!r}")

    def __reduce__(self):  # copy and pickle rebuild through __init__, never __setattr__
        return (FitResult, (self.law, self._fitted, self._label))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in FitResult.__slots__:
            raise AttributeError(name)
        if name in _MUTATORS:
            raise AttributeError(f"a FitResult has no {name}: fit the law (result.law.fit(data)) for a new result")
        value = getattr(self._fitted, name)
        if name.endswith("_") and isinstance(value, (dict, list, np.ndarray, pd.DataFrame)):
            return copy.deepcopy(value)  # fitted values read out as copies: the result stays as fitted
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | {n for n in dir(self._fitted) if n not in _MUTATORS})

    def _call(self, method: str, *args, **kwargs) -> Any:
        """The fitted state's ``method``; its warnings name the caller's line, as the law's own did."""
        with warnings_at_caller(depth=2):  # _call, then the public method, then the user's line
            return getattr(self._fitted, method)(*args, **kwargs)

    def __repr__(self) -> str:
        return repr(self._fitted)

    def labelled(self, label: str) -> "FitResult":
        """The same result under a name for legends (e.g. ``"Hoffmann et al. 2022"``)."""
        return FitResult(self.law, self._fitted, label)

    @property
    def label(self) -> str:
        return self._label if self._label is not None else self._fitted.name

    # ------------------------------------------------------- fitted values
    @property
    def params(self) -> dict[str, float]:
        """The parameter values (public scale), by name."""
        return dict(self._fitted.params_)

    @property
    def se(self) -> dict[str, float | None]:
        """Bootstrap standard errors (None: fixed, not estimated, or no bootstrap)."""
        return dict(getattr(self._fitted, "stderr_", {n: None for n in self._fitted.params_}))

    @property
    def ci(self) -> dict[str, list[float] | None]:
        """Percentile intervals at ``level`` (None where there is none)."""
        return copy.deepcopy(getattr(self._fitted, "ci_", {n: None for n in self._fitted.params_}))

    @property
    def covariance(self) -> pd.DataFrame | None:
        cov = getattr(self._fitted, "covariance_", None)
        return None if cov is None else cov.copy()

    @property
    def objective(self) -> float | None:
        return getattr(self._fitted, "objective_", None)

    @property
    def fit_info(self) -> dict[str, Any]:
        """How the fit went: starts, free parameters, procedure, bounds reached (empty for given values)."""
        return copy.deepcopy(getattr(self._fitted, "fit_info_", {}))

    @property
    def residuals(self) -> np.ndarray | None:
        r = getattr(self._fitted, "residuals_", None)
        return None if r is None else np.array(r, copy=True)

    @property
    def is_fitted(self) -> bool:
        return True

    def bootstrap_params(self) -> pd.DataFrame:
        """One row of public parameters per bootstrap resample."""
        return self._fitted.bootstrap_params()

    # ------------------------------------------------------------ predicting
    def predict(self, data=None, **inputs):
        """What the law predicts at the given inputs (a DataFrame, a mapping, or keyword arrays)."""
        return self._call("predict", data, **inputs)

    def predict_interval(self, data=None, *, level: float | None = None, kind: str = "prediction", **inputs):
        """Bootstrap interval at the inputs: of a new run (``kind="prediction"``) or of the curve (``"mean"``)."""
        return self._call("predict_interval", data, level=level, kind=kind, **inputs)

    def compute_optimal(self, C, *, level: float | None = None, interval: bool = True, **conditions) -> pd.DataFrame:
        """The loss-minimising allocation of each compute budget ``C``: one row per budget."""
        return self._call("compute_optimal", C, level=level, interval=interval, **conditions)

    def allocation_exponent_intervals(self, level: float | None = None) -> dict[str, list[float]]:
        return self._call("allocation_exponent_intervals", level)

    # ------------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        """Plain-Python (JSON-safe) summary; the CLI's ``--json`` output."""
        return self._fitted.summary()

    def report(self) -> str:
        """A readable table of the fit."""
        return self._fitted.report()

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict again, as plain JSON-safe Python (``from_dict`` reads it back)."""
        return self._fitted.to_dict()

    @staticmethod
    def from_dict(d: Mapping[str, Any], source: str = "this fit") -> "FitResult":
        from .base import Law

        return Law.from_dict(d, source=source)

    def save(self, path: str | Path) -> None:
        self._fitted.save(path)

    @staticmethod
    def load(path: str | Path) -> "FitResult":
        from .base import Law

        return Law.load(path)
