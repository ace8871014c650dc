"""Warnings that say what is wrong with a fit and what would fix it.

Each check returns the messages it raised (so tests and reports can read them)
and emits each as a :class:`~scaling.errors.ScalingWarning`.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from .errors import ScalingWarning

EXPONENT_NAMES = ("alpha", "beta", "a", "b")

#: predictions further than this factor outside the fitted range get a warning
EXTRAPOLATION_FACTOR = 100.0


def _warn(messages: list[str], stacklevel: int = 4) -> list[str]:
    for m in messages:
        warnings.warn(m, ScalingWarning, stacklevel=stacklevel)
    return messages


def check_thin_data(name: str, X: Mapping[str, np.ndarray], n_free: int) -> list[str]:
    out = []
    n = len(next(iter(X.values())))
    for c, v in X.items():
        k = np.unique(v).size
        if 1 < k < 3:
            out.append(f"{name}: only {k} distinct {c}; a power law in {c} with an offset needs at least 3 "
                       f"(add runs at more {c}, or fix E / tie the exponents)")
    if n < 2 * n_free:
        out.append(f"{name}: {n} runs for {n_free} free parameters is thin; expect wide intervals "
                   "(add runs, or fix/tie parameters)")
    return _warn(out)


def check_identification(name: str, params: Mapping[str, float], ci: Mapping, level: float,
                         fixed: Mapping | None = None) -> list[str]:
    out = []
    for k, v in params.items():
        if (fixed and k in fixed) or ci.get(k) is None:
            continue
        if not (k in EXPONENT_NAMES or k.startswith(("alpha", "beta", "R_"))):
            continue
        lo, hi = ci[k]
        if hi - lo > abs(v):
            out.append(f"{name}: the {int(round(100 * level))}% interval of {k} [{lo:.3g}, {hi:.3g}] is wider than "
                       f"its value {v:.3g}: weakly identified by these data (add runs over a wider range, or fix or tie "
                       "parameters, e.g. tie the exponents or fix E)")
    return _warn(out)


def check_residuals(name: str, X: Mapping[str, np.ndarray], residuals: np.ndarray) -> list[str]:
    """Residuals far above the scatter of repeated runs, or trending with an input."""
    r = np.asarray(residuals, float)
    n = r.size
    out = []
    if n < 10:
        return out
    scale = 1.4826 * np.median(np.abs(r - np.median(r)))
    keys = np.stack([X[c] for c in X], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    sizes = np.bincount(group)
    if (sizes >= 2).sum() >= 3:
        means = np.bincount(group, weights=r) / sizes
        within = r - means[group]
        dof = int((sizes - 1).sum())
        s_rep = float(np.sqrt((within**2).sum() / dof)) if dof else 0.0
        if s_rep > 0 and scale > 3 * s_rep:
            out.append(f"{name}: residuals ({100 * scale:.2g}% typical) are {scale / s_rep:.1f}x the scatter between "
                       f"repeated runs ({100 * s_rep:.2g}%): this form misses structure in the data (try another law, "
                       "or check for off-optimum or mis-configured runs)")
            return _warn(out)
    for c, v in X.items():
        if np.unique(v).size < 5:
            continue
        order = np.argsort(np.log(v), kind="stable")
        rs = r[order]
        w = max(5, (n // 8) | 1)
        pad = np.pad(rs, w // 2, mode="edge")
        smooth = np.array([np.median(pad[i:i + w]) for i in range(n)])
        trend, noise = float(np.std(smooth)), float(np.std(rs - smooth))
        if noise > 0 and trend > 1.5 * noise and trend > 0.005:
            out.append(f"{name}: residuals trend with {c} (systematic {100 * trend:.2g}% vs noise {100 * noise:.2g}%): "
                       f"the form does not fit these data across {c} (try another law, e.g. free exponents, "
                       "or a restricted range)")
            break
    return _warn(out)


def check_extrapolation(name: str, X: Mapping[str, np.ndarray], data_range: Mapping | None) -> list[str]:
    if not data_range:
        return []
    out = []
    for c, (lo, hi) in data_range.items():
        if c not in X:
            continue
        v = np.asarray(X[c], float)
        if hi <= 0 or lo <= 0 or v.min() <= 0:
            continue  # a quantity that can be zero (an area, a count): no ratio to speak of
        big, small = v.max() / hi, lo / v.min()
        if big > EXTRAPOLATION_FACTOR:
            out.append(f"{name}: predicting at {c}={v.max():.3g}, {big:.0f}x beyond the largest {c} fitted ({hi:.3g}); "
                       "the law is untested there and its interval grows: treat the number with care")
        elif small > EXTRAPOLATION_FACTOR:
            out.append(f"{name}: predicting at {c}={v.min():.3g}, {small:.0f}x below the smallest {c} fitted ({lo:.3g})")
    return _warn(out)


def at_chance(accuracy, n_pairs):
    """True where a pairwise accuracy on ``n_pairs`` held-out pairs does not beat 50%.

    One-sided binomial test at about 2.3 standard errors (p ~ 0.01); the reward
    models that fail it are scoring noise.
    """
    acc = np.asarray(accuracy, float)
    n = np.maximum(np.asarray(n_pairs, float), 1.0)
    return acc - 0.5 <= 2.33 * np.sqrt(0.25 / n)
