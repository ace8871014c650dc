"""The bootstrap: one entry point for every estimator.

``bootstrap`` draws the resamples once and hands them to the estimator's refit. Resampling
rows (or whole groups of rows, e.g. the points of one run's curve) with replacement is the
same as refitting with integer row weights drawn from a multinomial; a single-stage law
stacks those weight vectors and refits every resample in one batched optimisation, each
started from the full-data optimum, while a multi-stage procedure redoes itself on each.
An estimator whose resampling unit is not a row weight (runs within a budget, cells,
residuals) gives its own ``sampler``, drawn from the same seeded generator. Failed refits
are left out and warned about here, in one place.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import ScalingError, ScalingWarning, SettingsError
from .optimize import BatchResult, Model, ParamTransform, RobustObjective, newton_lm


def resample_weights(n: int, n_boot: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """(n_boot, n) counts: how often each of n rows appears in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


class Bootstrap(NamedTuple):
    """What a bootstrap gives: the (B', p) internal parameters of the refits that worked (None if
    none did), and the resamples drawn (all B of them, in the order drawn)."""

    theta: np.ndarray | None
    draws: Any


def bootstrap(who: str, n_boot: int, seed, refit: Callable, *, n: int | None = None,
              groups: np.ndarray | None = None, sampler: Callable | None = None, batched: bool = False,
              why: str = "failed") -> Bootstrap:
    """Draw ``n_boot`` resamples once and refit each.

    The draw: (B, n) multinomial row weights; with ``groups`` (an integer code per row) whole
    groups are resampled and each row takes its group's count; with ``sampler(rng, B)`` the
    estimator's own B resamples from ``np.random.default_rng(seed)``.

    The refit: ``batched=True``: ``refit(draws)`` refits all at once and returns
    ``(theta (B, p), ok (B,), converged (B,) or None)``; a refit that stopped at the iteration
    limit still counts (it improved on its start, the full-data optimum; dropping it would hide
    exactly the resamples that wander along flat directions). Otherwise ``refit(draw)`` redoes
    the procedure on one resample; one it cannot fit (a ScalingError: too few usable budgets, a
    failed stage) is left out. More than 5% left out, or not converged, is warned about.
    """
    B = int(n_boot)
    if sampler is not None:
        draws = sampler(np.random.default_rng(seed), B)
    elif groups is not None:
        codes = np.asarray(groups)
        draws = resample_weights(int(codes.max()) + 1 if codes.size else 0, B, seed)[:, codes]
    else:
        draws = resample_weights(int(n), B, seed)
    if batched:
        bar = _terminal_bar(B, who)
        if bar is None:
            theta, ok, converged = refit(draws)
        else:  # in chunks, so a person at a terminal sees it move (each resample is refitted on its own either way)
            parts = []
            for i in range(0, B, PROGRESS_CHUNK):
                parts.append(refit(draws[i:i + PROGRESS_CHUNK]))
                bar.update(min(PROGRESS_CHUNK, B - i))
            bar.close()
            theta = np.concatenate([np.asarray(p[0], float) for p in parts])
            ok = np.concatenate([np.asarray(p[1], bool) for p in parts])
            converged = (None if parts[0][2] is None else np.concatenate([np.asarray(p[2], bool) for p in parts]))
        ok = np.asarray(ok, bool)
        if converged is not None and (~np.asarray(converged, bool)).mean() > 0.05:
            warnings.warn(f"{who}: {int((~np.asarray(converged, bool)).sum())} of {B} bootstrap refits drifted "
                          "without converging (a flat direction in the fit); intervals include them",
                          ScalingWarning, stacklevel=2)
        theta = np.asarray(theta, float)[ok]
    else:
        out = []
        bar = _terminal_bar(B, who)
        for b in range(B):
            if bar is not None and b and b % PROGRESS_CHUNK == 0:
                bar.update(PROGRESS_CHUNK)
            try:
                out.append(np.asarray(refit(draws[b]), float))
            except (ScalingError, np.linalg.LinAlgError):
                continue
        if bar is not None:
            bar.close()
        theta = np.array(out) if out else np.empty((0, 0))
    if len(theta) < 0.95 * B:
        warnings.warn(f"{who}: {B - len(theta)} of {B} bootstrap resamples {why}; intervals use the rest",
                      ScalingWarning, stacklevel=2)
    return Bootstrap(theta if len(theta) else None, draws)


#: resamples refitted between two updates of the progress bar
PROGRESS_CHUNK = 50


def _terminal_bar(B: int, who: str):
    """A progress bar on stderr for a bootstrap of many resamples, only where a person watches a terminal (tests,
    logs and notebooks stay quiet, and there the resamples are refitted all at once); None otherwise."""
    import sys

    if B < 4 * PROGRESS_CHUNK or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=B, desc=f"{who}: bootstrap", unit="resample", leave=False, file=sys.stderr)


def newton_refit(model: Model, log_y: np.ndarray, phi0: np.ndarray, weights: np.ndarray, *,
                 loss: str = "huber", delta: float = 1e-3, transform: ParamTransform | None = None,
                 lower=None, upper=None) -> BatchResult:
    """Refit every row of ``weights`` (B, n) at once, each started from ``phi0``: the batched refit
    of a single-stage law."""
    B = len(weights)
    obj = RobustObjective(model, log_y, loss=loss, delta=delta, weights=weights, transform=transform)
    x0 = np.repeat(np.atleast_2d(phi0), B, axis=0)
    return newton_lm(obj, x0, np.arange(B), lower=lower, upper=upper, ftol=1e-12)


def percentile_interval(samples: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval at ``level`` (e.g. 0.9 -> 5th and 95th percentiles)."""
    if not 0 < level < 1:
        raise SettingsError(f"level must be in (0, 1), got {level}")
    lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=axis)
    return lo, hi
