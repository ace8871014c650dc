"""How much a run's observed prefix says about its final loss, learnt from a curve fit's own runs.

A live run is re-forecast as the plan times a run-specific factor, ``log L(T) = log m(T) + beta(s) a(s)``: ``a(s)``
is the run's offset from the plan over the later half of the points seen by share ``s`` of the run, and
``beta(s)`` how much of such an offset has lasted to the end of a run in the data the law was fitted on. Every
fitted run gives a pair (its offset after share ``s``, its residual at its last point); ``beta(s)`` is the
least-squares slope through the origin of the second on the first, clipped to [0, 1], and ``explained(s)`` the
share of the final residuals' spread it accounts for. A sweep whose runs keep their early lead or lag gives a
beta near 1 and the forecast follows the run; one whose early offsets wash out (the law's shape error early in
training, seed noise that does not last, evaluations on a different sample than the final one) gives a beta
near 0 and the forecast stays on the plan. So the prefix cannot pull the forecast further than it has pulled
the law's own runs (benchmarks/RESULTS.md, "reforecast_nested.py").

The calibration is a few numbers kept with the fit (``FitResult.reforecast_``, ``"reforecast"`` in its file and
in a plan): no torch, no data.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: the shares of a run at which the calibration is learnt (the Monitor interpolates between them)
SHARES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: fewer fitted runs than this with points at a share: no beta is learnt there (the forecast stays on the plan)
MIN_RUNS = 3
#: over the last this share of a run the forecast moves from the calibrated offset to the run's own last point
END_BLEND = 0.05


def late_half(r: np.ndarray) -> np.ndarray:
    """The points a run's offset is read from: the later half of those seen (all of them while under four)."""
    return r[r.size // 2:] if r.size >= 4 else r


def prefix_offset(r: np.ndarray) -> float:
    """A run's offset from its plan (log observed - log planned) over the later half of its points seen; 0 with none."""
    r = np.asarray(r, float)
    r = r[np.isfinite(r)]
    return float(late_half(r).mean()) if r.size else 0.0


def calibrate(run, step, residuals) -> dict[str, Any] | None:
    """The calibration of a curve fit from its points: each point's run and step and its log residual
    (observed - fitted). A run's share is its step over its last step; runs with fewer than 3 points are skipped.
    None when fewer than ``MIN_RUNS`` runs could be used."""
    run, step, res = np.asarray(run), np.asarray(step, float), np.asarray(residuals, float)
    ok = np.isfinite(step) & np.isfinite(res)
    pairs = []  # per run: (shares, residuals in order)
    for code in np.unique(run[ok]):
        m = ok & (run == code)
        order = np.argsort(step[m], kind="stable")
        s, r = step[m][order], res[m][order]
        if s.size < 3 or s[-1] <= 0:
            continue
        pairs.append((s / s[-1], r))
    if len(pairs) < MIN_RUNS:
        return None
    beta, explained, span, n_runs = [], [], [], []
    for share in SHARES:
        a, e = [], []
        for s, r in pairs:
            seen = s[:-1] <= share + 1e-9  # never the last point itself
            if seen.any():
                a.append(prefix_offset(r[:-1][seen]))
                e.append(r[-1])
        a, e = np.asarray(a), np.asarray(e)
        n_runs.append(int(a.size))
        if a.size < MIN_RUNS or not np.any(a != 0):  # nothing learnt here: the plan stands, whatever the offset
            beta.append(0.0), explained.append(0.0), span.append(None)
            continue
        span.append(round(float(np.abs(a).max()), 6))
        b = float(np.clip(np.sum(a * e) / np.sum(a * a), 0.0, 1.0))
        ss = float(np.sum(e * e))
        r2 = float(np.clip(1.0 - np.sum((e - b * a) ** 2) / ss, 0.0, 1.0)) if ss > 0 else 0.0
        beta.append(round(b, 4)), explained.append(round(r2, 4))
    return {"shares": list(SHARES), "beta": beta, "explained": explained, "range": span, "n_runs": n_runs}


def at_share(calibration: Mapping[str, Any] | None, seen: float) -> tuple[float, float, float]:
    """(beta, explained, range) at share ``seen`` of a run: beta and explained interpolated between the
    calibration's shares, from 0 at the start; range, the largest |offset| a fitted run had, at the last share
    reached (infinite before the first, or where too few runs had points: nothing is beyond it, and beta is 0
    there). (0, 0, inf) without a calibration: the plan stands."""
    if not calibration:
        return 0.0, 0.0, math.inf
    s = np.asarray(calibration["shares"], float)
    b, x = (np.concatenate([[0.0], np.asarray(calibration[k], float)]) for k in ("beta", "explained"))
    k = int(np.searchsorted(s, seen + 1e-9)) - 1
    q = calibration["range"][k] if k >= 0 else None
    s0 = np.concatenate([[0.0], s])
    return float(np.interp(seen, s0, b)), float(np.interp(seen, s0, x)), math.inf if q is None else float(q)


def valid(calibration) -> bool:
    """Whether ``calibration`` has the shape ``calibrate`` writes (a plan or fit file from elsewhere may not)."""
    if not isinstance(calibration, Mapping):
        return False
    try:
        s, b, x = (np.asarray(calibration[k], float) for k in ("shares", "beta", "explained"))
        q = np.asarray([np.nan if v is None else v for v in calibration["range"]], float)  # None: nothing learnt
    except (KeyError, TypeError, ValueError):
        return False
    return (s.ndim == 1 and s.size > 0 and s.shape == b.shape == x.shape == q.shape and bool(np.all(np.isfinite(s)))
            and not np.any(q < 0)
            and bool(np.all(np.diff(s) > 0)) and bool(np.all((b >= 0) & (b <= 1)))
            and bool(np.all((x >= 0) & (x <= 1))))
