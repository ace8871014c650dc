"""Fitting is an act: a law spec and data in, a frozen ``FitResult`` out.

``fit(law, data)`` runs the law's estimator (``law.estimator``) and wraps what it resolved in
the law's result class. The estimator of a single-stage law is ``multistart`` here: every
start of the law's grid in one batched robust optimisation, the best kept, and a bootstrap
that refits all resamples at once. Multi-stage procedures (IsoFLOP and envelope in
allocation.py, data-constrained, Gao, hyperparameters) are estimators of their own beside
their laws, and return the same state: ``params_``, ``theta_``, ``stderr_``, ``ci_``,
``covariance_``, ``objective_``, ``fit_info_``, ``residuals_``, ``n_points_``,
``converged_``, ``data_range_``, ``bootstrap_theta_`` and anything of their own.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._threads import limit_threads
from ..diagnostics import check_floor, check_identification, check_residuals, check_thin_data
from ..errors import DataError, FitError, ScalingWarning
from ..fitting.bootstrap import bootstrap, newton_refit
from ..fitting.optimize import BatchResult, RobustObjective, newton_lm
from .result import FitResult, params_state, uncertainty, warnings_at_caller

if TYPE_CHECKING:
    from .base import Law

#: multi-start pruning: after `PRUNE_AFTER` steps keep starts within `PRUNE_FACTOR` of the best
#: objective so far, and at least the best `PRUNE_KEEP` fraction of them
PRUNE_AFTER, PRUNE_FACTOR, PRUNE_KEEP = 6, 5.0, 0.03


def fit(law: "Law", data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> FitResult:
    """Fit ``law`` to a run table; the law is not changed (the result keeps a copy of its settings)."""
    law._check_settings()  # settings may have been changed since construction
    spec = law._spec()
    with warnings_at_caller(depth=2):  # each warning names the caller's line, whichever stage raised it
        state = type(law).estimator(spec, data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)
    _note_seed_means(data, state)
    return law.result_class(law._spec(), state)


def _note_seed_means(data, state: dict[str, Any]) -> None:
    """A table of per-cell means over seeds (``scaling.data.replicate_means``: it has ``n_seeds``) was fitted:
    say so in ``fit_info_`` (``averaged_seeds``: runs and cells), so the report, ``--json`` and a saved file
    count cells, not runs."""
    if not isinstance(data, pd.DataFrame) or "n_seeds" not in data.columns or "fit_info_" not in state:
        return
    k = pd.to_numeric(data["n_seeds"], errors="coerce")
    if k.isna().any() or k.sum() <= len(data):  # not a table of means, or every cell had one seed
        return
    info = state["fit_info_"]
    info["averaged_seeds"] = {"runs": int(k.sum()), "cells": int(len(data))}
    if info.get("unit", "runs") == "runs":
        info["unit"] = "cell means"
    over = info.get("bootstrap_over", "runs")
    if over.startswith("runs"):  # "runs", "runs within each budget"
        info["bootstrap_over"] = "cells (seed means)" + over[len("runs"):]


def _pct(x: float) -> str:
    return ">1000%" if x >= 10 else f"{100 * x:.0f}%"


def multistart(law: "Law", data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> dict[str, Any]:
    """The estimator of a single-stage law: robust multi-start fit of the log prediction, then a batched bootstrap."""
    df = law._frame(data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)
    X = {c: df[c].to_numpy(float) for c in law.inputs}
    y = df[law.target].to_numpy(float)
    transform, lower, upper, groups = law.constraints()
    n_free = len(groups)
    law._check_data(X)
    if y.size <= n_free:
        raise DataError(
            f"{y.size} point(s) for {n_free} free parameter(s): {law.name} needs more runs than "
            f"parameters (add runs, or fix/tie parameters)"
        )
    check_thin_data(law.name, X, n_free)
    log_y = np.log(y)
    model = law._model(X)
    with limit_threads(1), np.errstate(all="ignore"):
        theta0 = law._init_grid(X, log_y)
        if law.params is not None:
            user = {n: getattr(p, "value", None) for n, p in law.params.items()}
            if all(user.get(n) is not None for n in law.param_names()):
                theta0 = np.vstack([theta0, law._to_internal(user)])
        phi0 = transform.to_phi(theta0)
        phi0 = np.unique(np.clip(phi0, lower, upper), axis=0)
        obj = RobustObjective(model, log_y, loss=law.loss, delta=law.delta, transform=transform)
        res, n_pruned = _multistart(law.prune, obj, phi0, lower, upper)
    finite = np.isfinite(res.fun)
    if not finite.any():
        raise FitError(f"{law.name}: every start gave a non-finite objective; check the data's scale")
    best = int(np.nanargmin(np.where(finite, res.fun, np.inf)))
    fbest = float(res.fun[best])
    st = params_state(law, transform.to_theta(res.x[best]))
    near = finite & (res.fun <= fbest * (1 + 1e-6) + 1e-300)
    st.update(objective_=fbest, n_points_=int(y.size), converged_=bool(res.converged[best]))
    spread = _spread(law, st["theta_"], transform, res, finite, fbest)
    st["fit_info_"] = {
        "n_starts": int(len(phi0)),
        "n_pruned": int(n_pruned),
        "n_at_best": int(near.sum()),
        "start_spread": max(spread.values(), default=0.0),
        "free": [law.param_names()[g[0]] if len(g) == 1 else "=".join(law.param_names()[i] for i in g)
                 for g in groups],
        "loss": law.loss,
        "delta": law.delta,
    }
    if law.curve_law:  # rows are steps of training curves, not runs
        st["fit_info_"]["unit"] = "curve points"
        st["fit_info_"]["bootstrap_over"] = ("runs (whole curves)" if law.bootstrap_groups in df.columns
                                             else "curve points")
    st["residuals_"] = log_y - law._log_predict(st["theta_"][None, :], X)[0]
    st["data_range_"] = {c: [float(X[c].min()), float(X[c].max())] for c in law.inputs}
    progress = next((c for c in ("tokens", "step") if c in df.columns and df[c].notna().all()), None)
    if law.curve_law and "run" in df.columns and progress:  # what a live run's prefix says of its end
        from .reforecast import calibrate

        cal = calibrate(df["run"].to_numpy(), df[progress].to_numpy(float), st["residuals_"])
        if cal is not None:
            st["reforecast_"] = cal
    _warn_after_fit(law, st, lower, upper, res.x[best], spread)
    check_residuals(law.name, X, st["residuals_"])
    law._check_terms(st["params_"], X, y)
    st["bootstrap_theta_"] = None
    if law.bootstrap and n_free:
        def refit(W):
            with limit_threads(1), np.errstate(all="ignore"):
                boot = newton_refit(model, log_y, res.x[best], W, loss=law.loss, delta=law.delta,
                                    transform=transform, lower=lower, upper=upper)
            return transform.to_theta(boot.x), np.isfinite(boot.fun), boot.converged

        codes = None
        if law.bootstrap_groups and law.bootstrap_groups in df.columns:
            codes = pd.factorize(df[law.bootstrap_groups])[0]
        st["bootstrap_theta_"] = bootstrap(law.name, law.bootstrap, law.seed, refit, n=y.size, groups=codes,
                                           batched=True).theta
    uncertainty(law, st)
    check_identification(law.name, st["params_"], st["ci_"], law.level, law.all_fixed)
    check_floor(law.name, st["params_"], float(np.min(y)), law.all_fixed)
    return st


def _multistart(prune: bool, obj: RobustObjective, phi0: np.ndarray, lower, upper):
    """Run every start; with ``prune``, starts far behind the best after a few steps stop there."""
    if not prune or len(phi0) < 200:
        return newton_lm(obj, phi0, lower=lower, upper=upper, ftol=1e-12), 0
    warm = newton_lm(obj, phi0, lower=lower, upper=upper, max_iter=PRUNE_AFTER, ftol=1e-12)
    f = np.where(np.isfinite(warm.fun), warm.fun, np.inf)
    rank = np.argsort(np.argsort(f, kind="stable"), kind="stable")
    keep = np.isfinite(f) & ((f <= PRUNE_FACTOR * f.min()) | (rank < PRUNE_KEEP * len(f)) | warm.converged)
    rest = newton_lm(obj, warm.x[keep & ~warm.converged], lower=lower, upper=upper, ftol=1e-12)
    done = keep & warm.converged
    return BatchResult(x=np.vstack([warm.x[done], rest.x]), fun=np.concatenate([warm.fun[done], rest.fun]),
                       converged=np.concatenate([warm.converged[done], rest.converged]),
                       n_iter=np.zeros(int(done.sum()) + len(rest.x), int)), int((~keep).sum())


def _spread(law: "Law", theta, transform, res, finite, fbest) -> dict[str, float]:
    """Per parameter, the largest relative difference among starts within 1e-4 of the best objective.

    Log-scale parameters compare by their logs (a difference of 0.1 is ~10%).
    """
    near = finite & (res.fun <= fbest * (1 + 1e-4) + 1e-300)
    T = transform.to_theta(res.x[near])
    d = np.abs(T - theta)
    for i, p in enumerate(law.parameters):
        if not p.log:
            d[:, i] /= max(abs(theta[i]), 1e-3)
    return {p.name: float(min(d[:, i].max(), 1e3)) if d.size else 0.0 for i, p in enumerate(law.parameters)}


#: a parameter whose near-best starts disagree by more than this (relative; log-scale ones by their logs) in a fit
#: that did not converge is not identified: no interval is given for it
UNIDENTIFIED_SPREAD = 1.0


def _warn_after_fit(law: "Law", st: dict[str, Any], lower, upper, phi, spread: dict[str, float]) -> None:
    info = st["fit_info_"]
    names = info["free"]
    at = [names[k] for k in range(len(phi)) if (np.isfinite(lower[k]) and phi[k] - lower[k] < 1e-6)
          or (np.isfinite(upper[k]) and upper[k] - phi[k] < 1e-6)]
    info["at_bound"] = at
    default = {p.name: (p.lower, p.upper) for p in law.parameters}
    mine = [n for n in at if any(m in law.bounds or (law.params is not None and m in law.params)
                                 for m in n.split("="))]
    if mine:
        warnings.warn(f"{law.name}: parameter(s) {mine} ended on a bound; the optimum lies outside the "
                      "bounds you set: widen them or fix the parameter", ScalingWarning, stacklevel=3)
    for n in at:
        if n in mine:
            continue
        first = n.split("=")[0]
        lo, hi = default.get(first, (None, None))
        side = lo if lo is not None else hi
        warnings.warn(law._default_bound_message(n, side), ScalingWarning, stacklevel=3)
    if not st["converged_"]:
        warnings.warn(f"{law.name}: the best start did not converge within the iteration limit",
                      ScalingWarning, stacklevel=3)
        # the bootstrap refits from this point and stays in its corner: its interval would look precise
        loose = {n: v for n, v in spread.items()
                 if v > UNIDENTIFIED_SPREAD and n in {m for g in names for m in g.split("=")}}
        if loose:
            info["not_identified"] = {**info.get("not_identified", {}), **{
                n: f"the fit did not converge, and starts as good as the best disagree on it by {_pct(v)}"
                for n, v in loose.items()}}
    if info["start_spread"] > 0.05:
        warnings.warn(
            f"{law.name}: starts that reach nearly the same objective disagree by up to "
            f"{_pct(info['start_spread'])} in some parameter: the data pin this law down "
            "weakly (tie the exponents, fix E, or add runs over a wider range)", ScalingWarning, stacklevel=3)
    r = st["residuals_"]
    if r.size >= 10:
        bits = np.abs(np.abs(r) - abs(math.log(math.log(2)))) < 0.03
        if bits.mean() > 0.1:
            warnings.warn(f"{law.name}: {int(bits.sum())} runs sit a factor ln 2 off the fit: some losses "
                          "look like bits and others nats; convert all to nats", ScalingWarning, stacklevel=3)
