"""Bootstrap over runs.

Resampling runs with replacement is the same as refitting with integer row
weights drawn from a multinomial; stacking those weight vectors lets every
resample be refitted in one batched optimisation, each started from the
full-data optimum.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..errors import ScalingError, ScalingWarning

from ..errors import SettingsError
from .optimize import BatchResult, Model, ParamTransform, RobustObjective, newton_lm


def resample_weights(n: int, n_boot: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """(n_boot, n) counts: how often each of n rows appears in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def bootstrap_fit(model: Model, log_y: np.ndarray, phi0: np.ndarray, *, n_boot: int, seed=0,
                  loss: str = "huber", delta: float = 1e-3, transform: ParamTransform | None = None,
                  lower=None, upper=None, weights: np.ndarray | None = None) -> BatchResult:
    """Refit ``n_boot`` row-resamples of the data, all at once, starting from ``phi0``."""
    w = resample_weights(log_y.size, n_boot, seed) if weights is None else weights
    obj = RobustObjective(model, log_y, loss=loss, delta=delta, weights=w, transform=transform)
    x0 = np.repeat(np.atleast_2d(phi0), n_boot, axis=0)
    return newton_lm(obj, x0, np.arange(n_boot), lower=lower, upper=upper, ftol=1e-12)


def refit_each(refit: Callable[[int], np.ndarray], n_boot: int, who: str, why: str = "failed") -> np.ndarray | None:
    """The bootstrap of a multi-stage procedure: ``refit(b)`` redoes the whole procedure on resample b.

    A resample the procedure cannot fit (too few usable budgets, a failed stage) is left out; when more
    than 5% are, a warning says how many. Returns the (B', p) internal parameters, or None if none fit.
    """
    out = []
    for b in range(int(n_boot)):
        try:
            out.append(np.asarray(refit(b), float))
        except (ScalingError, np.linalg.LinAlgError):
            continue
    if len(out) < 0.95 * n_boot:
        warnings.warn(f"{who}: {int(n_boot) - len(out)} of {int(n_boot)} bootstrap resamples {why}; intervals use "
                      "the rest", ScalingWarning, stacklevel=3)
    return np.array(out) if out else None


def percentile_interval(samples: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval at ``level`` (e.g. 0.9 -> 5th and 95th percentiles)."""
    if not 0 < level < 1:
        raise SettingsError(f"level must be in (0, 1), got {level}")
    lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=axis)
    return lo, hi
