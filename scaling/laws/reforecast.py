"""How much a run's observed prefix says about its final loss, learnt from a curve fit's own runs.

A live run is re-forecast as the plan times a run-specific factor, ``log L(T) = log m(T) + beta(s) a(s)``: ``a(s)``
is the run's offset from the plan over the later half of the points seen by share ``s`` of the run, and
``beta(s)`` how much of such an offset has lasted to the end of a run in the data the law was fitted on. Every
fitted run gives a pair (its offset after share ``s``, its residual at its last point); ``beta(s)`` is the
least-squares slope through the origin of the second on the first, shrunk towards 0 by its own standard error
(``beta (1 - se^2 / beta^2)``, 0 when the slope is within one standard error of 0) and clipped to [0, 1];
``explained(s)`` is the share of the final residuals' spread it accounts for (adjusted for the one slope fitted),
and ``range(s)`` the largest |offset| a fitted run had. A sweep whose runs keep their early lead or lag gives a
beta near 1 and the forecast follows the run; one whose early offsets wash out (the law's shape error early in
training, seed noise that does not last, evaluations on a different sample than the final one) gives a beta
near 0 and the forecast stays on the plan. Within the range, the prefix cannot pull the forecast further than
it pulled the law's own runs; the part of an offset beyond it is taken whole by the Monitor, since nothing in
the fit says an offset that large washes out (benchmarks/RESULTS.md, "reforecast_nested.py").

A run's share is its tokens (or steps, without a tokens column) over those of its last point: the fitted runs are
taken as finished. The calibration is a few numbers kept with the fit (``FitResult.reforecast_``,
``"reforecast"`` in its file and in a plan): no torch, no data.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: the shares of a run at which the calibration is learnt (the Monitor interpolates between them)
SHARES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: fewer fitted runs than this with points by a share: no beta is learnt there (the forecast stays on the plan); a
#: slope through the origin of fewer pairs follows their noise (4 pure-noise runs gave beta > 0.5 a third of the time)
MIN_RUNS = 8
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


def calibrate(run, progress, residuals) -> dict[str, Any] | None:
    """The calibration of a curve fit from its points: each point's run, its progress (tokens, or steps) and its
    log residual (observed - fitted). A run's share is its progress over that of its last point; runs with fewer
    than 3 points are skipped. None when no share had ``MIN_RUNS`` runs with points by then."""
    run, prog, res = np.asarray(run), np.asarray(progress, float), np.asarray(residuals, float)
    ok = np.isfinite(prog) & np.isfinite(res)
    pairs = []  # per run: (shares, residuals in order)
    codes, inverse = np.unique(run[ok], return_inverse=True)
    order = np.lexsort((prog[ok], inverse))
    bounds = np.searchsorted(inverse[order], np.arange(codes.size + 1))
    p_ok, r_ok = prog[ok][order], res[ok][order]
    for k in range(codes.size):
        s, r = p_ok[bounds[k]:bounds[k + 1]], r_ok[bounds[k]:bounds[k + 1]]
        if s.size < 3 or s[-1] <= 0:
            continue
        pairs.append((s / s[-1], r))
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
        saa = float(np.sum(a * a))
        b = float(np.sum(a * e)) / saa
        se2 = float(np.sum((e - b * a) ** 2)) / (a.size - 1) / saa
        b = float(np.clip(b * max(0.0, 1.0 - se2 / b ** 2), 0.0, 1.0)) if b > 0 else 0.0
        ss = float(np.sum(e * e))
        r2 = 1.0 - float(np.sum((e - b * a) ** 2)) / ss * a.size / (a.size - 1) if ss > 0 else 0.0
        beta.append(round(b, 4)), explained.append(round(float(np.clip(r2, 0.0, 1.0)), 4))
    if max(n_runs, default=0) < MIN_RUNS:
        return None
    return {"shares": list(SHARES), "beta": beta, "explained": explained, "range": span, "n_runs": n_runs}


def at_share(calibration: Mapping[str, Any] | None, seen: float) -> tuple[float, float, float]:
    """(beta, explained, range) at share ``seen`` of a run, each interpolated between the calibration's shares:
    beta and explained from 0 at the start (and 0 at shares too few runs reached), range from its first learnt
    value. (0, 0, inf) without a calibration: the plan stands."""
    if not calibration:
        return 0.0, 0.0, math.inf
    s = np.asarray(calibration["shares"], float)
    q = np.asarray([np.nan if v is None else v for v in calibration["range"]], float)
    if not np.isfinite(q).any():
        return 0.0, 0.0, math.inf
    s0 = np.concatenate([[0.0], s])
    b, x = (np.interp(seen, s0, np.concatenate([[0.0], np.asarray(calibration[k], float)]))
            for k in ("beta", "explained"))
    learnt = np.isfinite(q)
    return float(b), float(x), float(np.interp(seen, s[learnt], q[learnt]))


#: what a plan or fit file is told when its calibration is not one ``calibrate`` writes
INVALID = "its reforecast calibration is not the shares, beta, explained and range lists a fit writes"


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
            and bool(np.all((s > 0) & (s <= 1))) and not np.any(q < 0) and not np.any(np.isinf(q))
            and bool(np.all(np.diff(s) > 0)) and bool(np.all((b >= 0) & (b <= 1)))
            and bool(np.all((x >= 0) & (x <= 1))))
