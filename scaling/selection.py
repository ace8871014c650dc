"""Pick the law by how it extrapolates, and measure the error of a law's form, from the runs given.

Both rest on one piece of machinery: **nested backtests inside the training runs**. The runs are
cut by size (N, or compute C) a few levels deep: each level fits on the runs below a cut and
predicts the runs above it (``scaling.backtest.top_mask`` makes the cuts, as it does for
``scaling backtest``). Every held-out run gives a log error ``e = log y - log prediction`` at a
distance ``d = log10(x / largest x fitted)`` decades beyond the fold's data.

**The error model.** For one law (a *candidate*: a registered law and its settings), the squared
log error of an extrapolation ``d`` decades out is modelled as

    E[e^2] = sigma^2 + v + tau^2 + (kappa d)^2

with ``sigma^2`` the noise of a run about the law (the folds' residual variance), ``v`` the
part that comes from the fold's parameters being estimated (delta method, from the fold's
Jacobian), and ``tau^2 + (kappa d)^2`` the error of the *form*: ``tau`` as soon as the law leaves
the data, ``kappa d`` growing linearly with the distance. ``tau^2`` and ``kappa^2`` are the
non-negative least-squares fit of ``e^2 - sigma^2 - v`` on ``[1, d^2]`` over every held-out run of
every level (``fit_form_error``). When the form is right, both are near 0.

**Selection** (``select``, ``fit_auto``; the CLI's ``--law auto``). Each candidate is scored by
its expected root-mean-square log error at the distance the user will extrapolate, ``sqrt(sigma^2 +
tau^2 + (kappa d*)^2)``, with tau and kappa fitted keeping ``v`` in (its parameters' variance is part
of how well a candidate extrapolates; the intervals take it from the bootstrap instead) and ``d*``
from the target (``target_N``/``target_C``; one decade beyond the data by default). A bootstrap over
the held-out runs says which candidates are within noise of the best (they beat it in at least 10% of resamples); among those the one with the fewest free
parameters is picked. The fit of the pick carries the candidate table (``result.selection_``).

**Form-error intervals.** The pick's ``tau`` and ``kappa`` are kept with the fit
(``result.form_error_``) and widen its prediction intervals: at a point ``d`` decades beyond the
data the noise-only interval's half-widths (in logs) are added in quadrature to
``z sqrt(tau^2 + (kappa d)^2)`` (z: the normal quantile of the level); inside the data nothing is
added. The band also covers, with the same half-widths, the predictions of the candidates that were
within noise of the pick. ``result.predict_interval(kind="total")`` gives that interval,
``kind="prediction"`` the noise-only one; a fit with a form-error model gives the total interval by
default (so does ``scaling predict``, which prints both), and ``scaling backtest`` reports both,
scoring coverage of the total one. ``with_form_error`` gives any final-loss fit the same model.

This module imports the laws and fitting; of them only ``FitResult`` reaches back into it (lazily, for
a fit that carries a selection or a form-error model). No torch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ._threads import limit_threads
from .errors import DataError, FitError, ScalingError, SettingsError, UnknownNameError

#: how many nested levels, the fewest distinct sizes a fold fits on, the bootstrap over held-out runs
LEVELS, MIN_SIZES, N_BOOT = 3, 4, 300
#: a candidate is "within noise" of the best when it scores at least as well in this share of resamples
WITHIN_NOISE = 0.10
#: the default extrapolation when no target is given: one decade beyond the largest run
DEFAULT_DISTANCE = 1.0

#: standard variants: label -> (law name, settings); "-fixed-E" ones need a value for E (fix={"E": ...})
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chinchilla": ("chinchilla", {}),
    "chinchilla-tied": ("chinchilla", {"tie_exponents": True}),
    "kaplan": ("kaplan", {}),
    "data-constrained": ("data-constrained", {}),
}


@dataclass(frozen=True)
class Candidate:
    """A law and its settings, under a label (``chinchilla-tied``, ``chinchilla-fixed-E``)."""

    label: str
    law: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def spec(self, **common):
        """The law spec: this candidate's settings over the ``common`` ones (bounds kept to its own parameters,
        ``starts`` given to the laws that take it)."""
        from .laws import get_law

        cls = get_law(self.law)
        common = dict(common)
        if "starts" in common and "starts" not in cls.options():
            del common["starts"]
        if common.get("bounds"):
            common["bounds"] = {k: v for k, v in common["bounds"].items() if k in cls.param_names()} or None
        return cls(**{**common, **self.settings})


#: settings every candidate of --law auto takes (``starts``: those that have a start grid, chinchilla's "full" or
#: "coarse"); the others are variants (tie_exponents, fixed) or one law's own
COMMON_SETTINGS = ("loss", "delta", "bounds", "prune", "starts")


def check_common(common: Mapping[str, Any]) -> None:
    """Refuse a setting that is not common to the candidates, naming what to do instead."""
    bad = [k for k, v in common.items() if k not in COMMON_SETTINGS and v is not None]
    if not bad:
        return
    if "tie_exponents" in bad:
        raise SettingsError("with --law auto, alpha = beta is a candidate (chinchilla-tied), not a setting: drop "
                            "--tie-exponents, or name the candidates (--candidates chinchilla-tied)")
    raise SettingsError(f"--law auto takes the settings every candidate shares ({', '.join(COMMON_SETTINGS)} and "
                        f"fixed values for -fixed- candidates), not {bad}; name one law to use them")


# ------------------------------------------------------------------ candidates
def default_candidates(df: pd.DataFrame, fixed: Mapping[str, float] | None = None) -> list[Candidate]:
    """The candidates for a table: the applicable registered laws and their standard variants.

    Chinchilla free and with alpha = beta, Kaplan's joint form, the data-constrained law when some run
    repeats data (D > U), the single-input Kaplan laws when only one input varies; with ``fixed`` values
    (e.g. ``{"E": 1.69}``) each candidate that has those parameters is tried with them fixed and free.
    """
    from .backtest import applicable_laws
    from .laws import get_law

    names = applicable_laws(df)
    repeated = {"D", "U"} <= set(df.columns) and bool((df["D"] > df["U"] * (1 + 1e-9)).any())
    constant = {c for c in df.columns if c != "U" and df[c].nunique() <= 1}  # U may be one budget for every run
    varied = [n for n in names if not constant & set(get_law(n).inputs)]
    names = varied or names  # a law reading a constant column cannot estimate that term
    out = []
    for name in names:
        if name == "data-constrained" and not repeated:
            continue
        if name == "chinchilla":
            out += [Candidate("chinchilla", "chinchilla"), Candidate("chinchilla-tied", "chinchilla",
                                                                     {"tie_exponents": True})]
        else:
            out.append(Candidate(name, name))
    if fixed:
        more = []
        for c in out:
            own = {k: v for k, v in fixed.items() if k in get_law(c.law).param_names()}
            if own:
                tag = "-fixed-" + "-".join(sorted(own))
                more.append(Candidate(c.label + tag, c.law, {**c.settings, "fixed": own}))
        out += more
    if not out:
        raise DataError(f"no law in the registry predicts these runs' loss from their columns {list(df.columns)}")
    return out


def parse_candidates(given, df: pd.DataFrame, fixed: Mapping[str, float] | None = None) -> list[Candidate]:
    """Candidates from a user's list: labels (``"chinchilla-tied"``, ``"kaplan"``, any registered law
    that predicts a run's loss, ``"chinchilla-fixed-E"`` with a value in ``fixed``), ``Candidate``\\ s,
    or ``(law, settings)`` pairs; a comma-separated string is a list."""
    from .laws import available_laws, get_law

    if given is None:
        return default_candidates(df, fixed)
    if isinstance(given, str):
        given = [g.strip() for g in given.split(",") if g.strip()]
    out: list[Candidate] = []
    for g in given:
        if isinstance(g, Candidate):
            out.append(g)
            continue
        if isinstance(g, tuple) and len(g) == 2 and isinstance(g[0], str):
            get_law(g[0])
            tag = ",".join(f"{k}={v}" for k, v in dict(g[1]).items())
            out.append(Candidate(f"{g[0]}({tag})" if tag else g[0], g[0], dict(g[1])))
            continue
        if not isinstance(g, str):
            raise SettingsError(f"a candidate is a label such as 'chinchilla-tied' or a (law, settings) pair, "
                                f"got {g!r}")
        base, _, fixed_part = g.partition("-fixed-")
        if base in VARIANTS:
            law, settings = VARIANTS[base]
        elif base in available_laws():
            law, settings = base, {}
        else:
            fits = lambda n: _predicts_runs(n) and set(get_law(n).inputs) <= set(df.columns)  # noqa: E731
            known = sorted({k for k, (law, _) in VARIANTS.items() if fits(law)}
                           | {n for n in available_laws() if fits(n)})
            raise UnknownNameError(f"unknown candidate {g!r}; candidates for these runs are {', '.join(known)} (add "
                                   "-fixed-E to fix E at the value given with --fix E=VALUE)")
        if not _predicts_runs(law):
            raise SettingsError(f"candidate {g!r}: {law} does not predict a single run's loss, so it cannot be "
                                "backtested or selected")
        settings = dict(settings)
        if fixed_part:
            names = fixed_part.split("-")
            foreign = [n for n in names if n not in get_law(law).param_names()]
            if foreign:
                raise SettingsError(f"candidate {g!r}: {law} has no parameter {', '.join(foreign)} to fix (its "
                                    f"parameters are {', '.join(get_law(law).param_names())})")
            missing = [n for n in names if n not in (fixed or {})]
            if missing:
                raise SettingsError(f"candidate {g!r} fixes {missing}: give the value(s), e.g. --fix {missing[0]}=1.69 "
                                    f"(Python: fixed={{'{missing[0]}': 1.69}})")
            settings["fixed"] = {n: fixed[n] for n in names}
        out.append(Candidate(g, law, settings))
    if not out:
        raise SettingsError("the candidate list is empty")
    labels = [c.label for c in out]
    if len(set(labels)) < len(labels):
        raise SettingsError(f"the candidate list names {sorted({x for x in labels if labels.count(x) > 1})} twice")
    return out


def _predicts_runs(name: str) -> bool:
    from .laws import get_law
    from .laws.allocation import AllocationLaw

    cls = get_law(name)
    return cls.predicts_loss and not cls.curve_law and not issubclass(cls, AllocationLaw) and cls.target == "loss"


# ------------------------------------------------------------------- nesting
def size_of(df_or_X, by: str) -> np.ndarray:
    """The size a run is cut and extrapolated by: N, or compute C (6 N D where the table has no C)."""
    if by in df_or_X:
        return np.asarray(df_or_X[by], float)
    if by == "C" and "N" in df_or_X and "D" in df_or_X:
        return 6.0 * np.asarray(df_or_X["N"], float) * np.asarray(df_or_X["D"], float)
    raise DataError(f"cannot measure extrapolation in {by}: the runs have no {by} column"
                    + (" (nor N and D)" if by == "C" else ""))


def nested_folds(df: pd.DataFrame, by: str, distance: float, levels: int = LEVELS,
                 min_sizes: int = MIN_SIZES) -> list[np.ndarray]:
    """Masks of held-out rows, one per level: the runs above a cut in ``by``, deepest last.

    The deepest level holds out min(max(distance, R/4), R/2) decades of the R the runs span (never
    more than half, so each fold keeps most of the range); the others evenly less. A level must leave
    ``min_sizes`` distinct sizes to fit on and hold out at least one; a cut falls on a size.
    """
    from .backtest import top_mask

    x = size_of(df, by)
    values = np.unique(x)
    if values.size < min_sizes + 1:
        raise DataError(f"nested backtests need at least {min_sizes + 1} distinct values of {by} (fit on "
                        f"{min_sizes} or more, predict the larger ones); these runs have {values.size}. Add runs "
                        "at more sizes, or name one law instead of auto")
    R = math.log10(values[-1] / values[0])
    depth = min(max(distance, R / 4), R / 2)
    folds, seen = [], set()
    for j in range(1, levels + 1):
        cut = math.log10(values[-1]) - depth * j / levels
        k = int(np.sum(np.log10(values) > cut + 1e-12))  # sizes above the cut
        k = max(k, 1)
        if values.size - k < min_sizes or k in seen:
            continue
        seen.add(k)
        folds.append(top_mask(df, by, k, x=x))
    if not folds:
        raise DataError(f"too few sizes for nested backtests: {values.size} distinct {by} leave no level with "
                        f"{min_sizes} sizes to fit on")
    return folds


@dataclass
class NestedErrors:
    """One candidate's nested backtest: a row per (fold, held-out run)."""

    candidate: Candidate
    table: pd.DataFrame  # fold, row, distance, error (log y - log pred), var_param, predicted
    sigma2: float  # the folds' residual variance about the law
    n_free: int
    failed: str | None = None


def nested_errors(cand: Candidate, df: pd.DataFrame, folds: Sequence[np.ndarray], by: str,
                  common: Mapping[str, Any] | None = None) -> NestedErrors:
    """Fit ``cand`` on the training part of every fold (all folds in one batched optimisation when
    the law has a single-stage fit), predict the held-out runs, and return their errors."""
    from .laws import estimate

    spec = cand.spec(**{**(common or {}), "bootstrap": 0})
    if getattr(spec, "starts", None) == "full":
        spec.starts = "coarse"  # the 243-start grid: nested fits are many
    X = {c: df[c].to_numpy(float) for c in spec.inputs}
    log_y = np.log(df["loss"].to_numpy(float))
    transform, lower, upper, groups = spec.constraints()
    q = len(groups)
    train = [~m for m in folds]
    with limit_threads(1), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if type(spec).estimator is estimate.multistart and q:
            thetas = _batched_fold_fits(spec, X, log_y, train, transform, lower, upper)
        else:
            thetas = []
            for t in train:
                try:
                    thetas.append(spec.fit(df[t].reset_index(drop=True)).theta_)
                except ScalingError:
                    thetas.append(None)
    rows, sig = [], []
    x = size_of(df, by)
    for f, (t, theta) in enumerate(zip(train, thetas)):
        if theta is None or not np.all(np.isfinite(theta)):
            continue
        with np.errstate(all="ignore"):
            lp = spec._log_predict(theta[None, :], X)[0]
            J = _jacobian(spec, theta, transform, X)
        r = log_y[t] - lp[t]
        n_t = int(t.sum())
        s2 = float(np.sum(r ** 2) / max(n_t - q, 1))
        sig.append(s2)
        held = np.flatnonzero(~t)
        try:
            Jt = J[t]
            cov = np.linalg.pinv(Jt.T @ Jt) * s2
            v = np.einsum("ip,pq,iq->i", J[held], cov, J[held])
        except np.linalg.LinAlgError:
            v = np.zeros(held.size)
        dist = np.log10(x[held] / x[t].max())
        rows.append(pd.DataFrame({"fold": f, "row": held, "distance": dist, "error": log_y[held] - lp[held],
                                  "var_param": np.clip(v, 0, None), "predicted": lp[held]}))
    if not rows:
        return NestedErrors(cand, pd.DataFrame(columns=["fold", "row", "distance", "error", "var_param", "predicted"]),
                            math.nan, q, failed="could not be fitted on any nested fold")
    table = pd.concat(rows, ignore_index=True)
    if not np.isfinite(table["error"]).all():
        return NestedErrors(cand, table, math.nan, q, failed="predicted a non-finite loss on a held-out run")
    return NestedErrors(cand, table, float(np.mean(sig)), q)


def _batched_fold_fits(spec, X, log_y, train, transform, lower, upper) -> list[np.ndarray | None]:
    """Every start of every fold in one batched robust optimisation: a fold is a 0/1 row weight."""
    from .fitting.optimize import RobustObjective, newton_lm

    W = np.array(train, float)
    starts, fold_of = [], []
    for f, t in enumerate(train):
        Xf = {c: v[t] for c, v in X.items()}
        phi = transform.to_phi(spec._init_grid(Xf, log_y[t]))
        phi = np.unique(np.clip(phi, lower, upper), axis=0)
        starts.append(phi)
        fold_of.append(np.full(len(phi), f))
    phi0, rows = np.vstack(starts), np.concatenate(fold_of)
    obj = RobustObjective(spec._model(X), log_y, loss=spec.loss, delta=spec.delta, weights=W, transform=transform)
    if spec.prune and len(phi0) >= 200:
        # as the single fit prunes (laws/estimate.py), but within each fold: a few steps for every start, then
        # only the starts near their fold's best go on
        from .laws.estimate import PRUNE_AFTER, PRUNE_FACTOR, PRUNE_KEEP

        warm = newton_lm(obj, phi0, rows, lower=lower, upper=upper, max_iter=PRUNE_AFTER, ftol=1e-12)
        f = np.where(np.isfinite(warm.fun), warm.fun, np.inf)
        keep = warm.converged.copy()
        for g in range(len(train)):
            mine = np.flatnonzero(rows == g)
            fg = f[mine]
            rank = np.argsort(np.argsort(fg, kind="stable"), kind="stable")
            keep[mine] |= np.isfinite(fg) & ((fg <= PRUNE_FACTOR * fg.min()) | (rank < max(PRUNE_KEEP * mine.size, 3)))
        go = keep & ~warm.converged
        rest = newton_lm(obj, warm.x[go], rows[go], lower=lower, upper=upper, ftol=1e-12)
        done = keep & warm.converged
        x_all, fun, rows = np.vstack([warm.x[done], rest.x]), np.concatenate([f[done], rest.fun]), \
            np.concatenate([rows[done], rows[go]])
        res = type(rest)(x=x_all, fun=fun, converged=np.ones(len(fun), bool), n_iter=np.zeros(len(fun), int))
    else:
        res = newton_lm(obj, phi0, rows, lower=lower, upper=upper, ftol=1e-12)
    out = []
    for f in range(len(train)):
        fun = np.where((rows == f) & np.isfinite(res.fun), res.fun, np.inf)
        k = int(np.argmin(fun))
        out.append(transform.to_theta(res.x[k]) if np.isfinite(fun[k]) else None)
    return out


def _jacobian(spec, theta, transform, X) -> np.ndarray:
    """d log prediction / d free parameters at ``theta`` (central differences; any law)."""
    phi = transform.to_phi(theta[None, :])[0]
    q = phi.size
    h = 1e-5 * (1.0 + np.abs(phi))
    P = np.repeat(phi[None, :], 2 * q, axis=0)
    P[np.arange(q), np.arange(q)] += h
    P[q + np.arange(q), np.arange(q)] -= h
    lp = spec._log_predict(transform.to_theta(P), X)
    return ((lp[:q] - lp[q:]) / (2 * h[:, None])).T


# ---------------------------------------------------------------- error model
def excess_terms(table: pd.DataFrame, sigma2: float, less_param: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(d^2, e^2 - sigma^2 - v) of each nested prediction: the squared error beyond noise and (with
    ``less_param``) the fold's parameter uncertainty, against the squared distance. Intervals take the
    parameter uncertainty from the bootstrap, so their form error leaves it out; a candidate's score keeps
    it (a law with more free parameters pays for their variance when it extrapolates)."""
    d2 = np.clip(table["distance"].to_numpy(float), 0, None) ** 2
    excess = table["error"].to_numpy(float) ** 2 - sigma2
    return d2, excess - table["var_param"].to_numpy(float) if less_param else excess


def fit_form_error(d2: np.ndarray, excess: np.ndarray, W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tau^2, kappa^2): non-negative least squares of ``excess`` on [1, d^2], for each row of weights
    ``W`` (B, points) at once (one fit when W is None)."""
    W = np.ones((1, d2.size)) if W is None else np.atleast_2d(W)
    S0, S1, S2 = W.sum(1), W @ d2, W @ (d2 * d2)
    T0, T1 = W @ excess, W @ (d2 * excess)
    det = S0 * S2 - S1 * S1
    ok = det > 1e-300 * np.maximum(S0 * S2, 1e-300)
    safe = np.where(ok, det, 1.0)
    a = np.where(ok, (S2 * T0 - S1 * T1) / safe, 0.0)
    b = np.where(ok, (S0 * T1 - S1 * T0) / safe, 0.0)
    only_b = np.where(S2 > 0, T1 / np.where(S2 > 0, S2, 1.0), 0.0)  # a clipped to 0
    only_a = np.where(S0 > 0, T0 / np.where(S0 > 0, S0, 1.0), 0.0)  # b clipped to 0
    a, b = np.where(a < 0, 0.0, a), np.where(a < 0, only_b, b)
    a, b = np.where(b < 0, only_a, a), np.where(b < 0, 0.0, b)
    return np.clip(a, 0, None), np.clip(b, 0, None)


def form_error_params(table: pd.DataFrame, sigma2: float, less_param: bool = True) -> tuple[float, float]:
    """(tau, kappa) of one candidate's nested errors: the form error beyond the data is
    sqrt(tau^2 + (kappa d)^2) at d decades out (in logs)."""
    tau2, kap2 = fit_form_error(*excess_terms(table, sigma2, less_param))
    return math.sqrt(float(tau2[0])), math.sqrt(float(kap2[0]))


def expected_error(sigma2: float, tau: float, k: float, distance: float) -> float:
    """Root-mean-square log error of a new run ``distance`` decades beyond the data, under the model."""
    return math.sqrt(sigma2 + tau ** 2 + (k * max(distance, 0.0)) ** 2)


def form_error_model(ne: NestedErrors, by: str, x_max: float) -> dict[str, Any]:
    """What a fit keeps to widen its intervals (``result.form_error_``; JSON-safe)."""
    t = ne.table
    tau, k = form_error_params(t, ne.sigma2)
    return {"by": by, "x_max": float(x_max), "tau": tau, "kappa": k, "sigma": math.sqrt(ne.sigma2),
            "n_folds": int(t["fold"].nunique()), "n_points": int(len(t)),
            "max_distance": float(t["distance"].max()), "alternatives": []}


def total_interval(lo: np.ndarray, hi: np.ndarray, log_point: np.ndarray, X: Mapping[str, np.ndarray],
                   fe: Mapping[str, Any], level: float, alt_log_points: Sequence[np.ndarray] = ()):
    """The noise-only interval (lo, hi) widened by the form error at each point's distance, and
    stretched to cover the same band around each candidate that was within noise of the pick."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    d = np.log10(size_of(X, fe["by"]) / fe["x_max"])
    w = np.where(d > 0, z * np.sqrt(fe.get("tau", 0.0) ** 2 + (fe["kappa"] * np.clip(d, 0, None)) ** 2), 0.0)
    below = np.clip(log_point - np.log(lo), 0, None)
    above = np.clip(np.log(hi) - log_point, 0, None)
    tlo = log_point - np.sqrt(below ** 2 + w ** 2)
    thi = log_point + np.sqrt(above ** 2 + w ** 2)
    for a in alt_log_points:
        tlo = np.minimum(tlo, a - (log_point - tlo))
        thi = np.maximum(thi, a + (thi - log_point))
    return np.exp(tlo), np.exp(thi)


# ----------------------------------------------------------------- selection
@dataclass
class Selection:
    """What ``select`` found: the pick, and every candidate's nested errors and score."""

    chosen: Candidate
    table: pd.DataFrame  # one row per candidate
    errors: dict[str, NestedErrors]
    by: str
    target: float
    distance: float
    within_noise: list[str]
    why: str
    folds: list[np.ndarray]
    x_max: float
    x: np.ndarray = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        rows = self.table.replace({np.nan: None}).to_dict(orient="records")
        return {"chosen": self.chosen.label, "law": self.chosen.law, "variant": _jsonable(dict(self.chosen.settings)),
                "by": self.by, "target": self.target, "distance": self.distance,
                "n_folds": len(self.folds), "fold_train_max": [float(self.x[~f].max()) for f in self.folds],
                "within_noise": list(self.within_noise), "why": self.why, "candidates": rows}


def _jsonable(v):
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _target_size(df, by, target_N, target_C) -> tuple[str, float | None]:
    if target_N is not None and target_C is not None:
        raise SettingsError("give one target: --target-N or --target-C, not both")
    if target_N is not None:
        return "N", float(target_N)
    if target_C is not None:
        return "C", float(target_C)
    return by, None


def select(data, *, candidates=None, target_N: float | None = None, target_C: float | None = None,
           by: str | None = None, levels: int = LEVELS, columns=None, fixed: Mapping[str, float] | None = None,
           seed: int = 0, dropna: bool = False, **common) -> Selection:
    """Score every candidate by nested backtests on ``data`` and pick one (see the module docstring).

    ``target_N`` / ``target_C``: the size the prediction is for (sets what the extrapolation is measured
    in; default: one decade beyond the largest N). ``candidates``: labels or pairs (``parse_candidates``);
    default ``default_candidates``. ``fixed``: values for ``-fixed-`` variants. ``common``: settings every
    candidate gets (``loss``, ``delta``, ``bounds``, ``prune``, ``starts``).
    """
    df = _frame(data, columns, dropna)
    by0 = by or ("N" if "N" in df.columns else "C")
    by, target = _target_size(df, by0, target_N, target_C)
    x = size_of(df, by)
    if target is not None:
        if not (math.isfinite(target) and target > 0):
            raise SettingsError(f"the target {by} must be a positive number, got {target}")
        if target <= x.max():
            raise SettingsError(f"the target {by} = {target:.4g} is not beyond the data (the largest run has {by} = "
                                f"{x.max():.4g}): auto picks the law that extrapolates best, so give a target above "
                                "the runs, or drop the target for one decade beyond them")
        distance = math.log10(target / x.max())
    else:
        distance = DEFAULT_DISTANCE
        target = float(x.max() * 10 ** distance)
    check_common(common)
    cands = parse_candidates(candidates, df, fixed)
    for c in cands:
        missing = [i for i in _law_inputs(c.law) if i not in df.columns]
        if missing:
            raise DataError(f"candidate {c.label} predicts from {list(_law_inputs(c.law))}; the runs have no {missing}")
    folds = nested_folds(df, by, distance, levels=levels)
    errs = {c.label: nested_errors(c, df, folds, by, common) for c in cands}
    ok = [k for k, e in errs.items() if e.failed is None]
    if not ok:
        raise FitError("no candidate could be fitted on the nested folds: "
                       + "; ".join(f"{k} {e.failed}" for k, e in errs.items()))
    form = {k: form_error_params(errs[k].table, errs[k].sigma2) for k in ok}
    score = {k: expected_error(errs[k].sigma2, *form_error_params(errs[k].table, errs[k].sigma2, False), distance)
             for k in ok}
    best = min(ok, key=lambda k: score[k])
    beats = _bootstrap_beats(errs, ok, best, distance, seed)
    within = [k for k in ok if k != best and beats[k] >= WITHIN_NOISE]
    pool = [best] + within
    chosen = min(pool, key=lambda k: (errs[k].n_free, score[k]))
    rows = []
    for c in cands:
        e = errs[c.label]
        t = e.table
        rows.append({"candidate": c.label, "law": c.law, "n_free": e.n_free,
                     "score": score.get(c.label, math.nan),
                     "nested_rmse": float(np.sqrt(np.mean(t["error"] ** 2))) if e.failed is None else math.nan,
                     "nested_bias": float(np.mean(t["error"])) if e.failed is None else math.nan,
                     "sigma": math.sqrt(e.sigma2) if e.failed is None else math.nan,
                     "tau": form[c.label][0] if c.label in form else math.nan,
                     "kappa": form[c.label][1] if c.label in form else math.nan, "n_points": int(len(t)),
                     "beats_best": beats.get(c.label, math.nan) if c.label != best else None,
                     "within_noise": c.label in pool, "chosen": c.label == chosen,
                     "failed": e.failed})
    table = pd.DataFrame(rows).sort_values("score", na_position="last", kind="stable").reset_index(drop=True)
    why = _why(chosen, best, score, errs, within, beats, distance, by, target)
    sel = Selection(next(c for c in cands if c.label == chosen), table, errs, by, float(target), float(distance),
                    within, why, folds, float(x.max()), x)
    return sel


def _law_inputs(name: str) -> tuple[str, ...]:
    from .laws import get_law

    return get_law(name).inputs


def _frame(data, columns, dropna) -> pd.DataFrame:
    from .backtest import SIZE_COLUMNS
    from .data import parse_columns, prepare, read_table

    raw = read_table(data) if not isinstance(data, pd.DataFrame) else data
    present = [c for c in SIZE_COLUMNS if c in raw.columns or c in parse_columns(columns)]
    required = ["loss"] + [c for c in present if c != "C"]
    if {"N", "C"} <= set(present) and "D" not in present:  # D = C / 6N, as an explicit --law chinchilla derives it
        required.append("D")
    df = prepare(raw, required, columns=columns, dropna=dropna)
    if {"N", "D"} <= set(df.columns) and "C" not in df.columns:
        df["C"] = 6 * df["N"] * df["D"]
    return df


def _bootstrap_beats(errs, ok, best, distance, seed) -> dict[str, float]:
    """Share of bootstrap resamples of the held-out runs in which each candidate scores at least as well
    as the best (resampling runs keeps a run's errors at every level together)."""
    rows = np.unique(np.concatenate([errs[k].table["row"].to_numpy() for k in ok]))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(rows.size, np.full(rows.size, 1.0 / rows.size), size=N_BOOT).astype(float)
    index = {r: i for i, r in enumerate(rows)}
    scores = {}
    for k in ok:
        t = errs[k].table
        W = counts[:, np.array([index[r] for r in t["row"]])]  # (B, points)
        tau2, kap2 = fit_form_error(*excess_terms(t, errs[k].sigma2, False), W)
        scores[k] = errs[k].sigma2 + tau2 + kap2 * distance ** 2
    return {k: float(np.mean(scores[k] <= scores[best])) for k in ok if k != best}


def _why(chosen, best, score, errs, within, beats, distance, by, target) -> str:
    ranked = sorted(score, key=score.get)
    pct = lambda v: f"{100 * (math.exp(v) - 1):.2f}%"  # noqa: E731
    head = (f"expected error at {by} = {target:.3g} ({distance:.2f} decades beyond the runs), from nested "
            f"backtests: " + ", ".join(f"{k} {pct(score[k])}" for k in ranked))
    if len(ranked) == 1:
        if len(errs) == 1:
            return head + f"; {chosen} is the only candidate (the only law that applies to these runs' columns, or " \
                          "the only one named)"
        return head + f"; {chosen} is the only candidate that could be fitted on the nested folds"
    if chosen == best:
        runner = ranked[1]
        gap = f"{runner} is {score[runner] / score[best]:.2f}x worse"
        if within:
            return (head + f". {best} wins; {', '.join(within)} within noise of it (they score as well in >= "
                    f"{100 * WITHIN_NOISE:.0f}% of bootstrap resamples of the held-out runs), and {best} has the "
                    f"fewest free parameters among them; the interval covers their predictions too ({gap})")
        return head + f". {best} wins clearly: {gap}, better in {100 * (1 - beats[runner]):.0f}% of resamples"
    return (head + f". {best} scores best, but {chosen} is within noise of it (as good in {100 * beats[chosen]:.0f}% "
            f"of resamples) with fewer free parameters ({errs[chosen].n_free} against {errs[best].n_free}), so "
            f"{chosen} is picked; the interval covers the predictions of "
            f"{', '.join(k for k in [best] + within if k != chosen)}")


# ------------------------------------------------------------------ fitting
def fit_auto(data, *, candidates=None, target_N=None, target_C=None, by=None, levels: int = LEVELS, columns=None,
             fixed: Mapping[str, float] | None = None, bootstrap: int = 1000, seed: int = 0, level: float = 0.9,
             dropna: bool = False, drop_highest_loss: int = 0, average_seeds: bool = True, **common):
    """``--law auto``: select a candidate by nested backtests, fit it on all the runs, and return its
    ``FitResult`` carrying ``selection_`` (the candidate table) and ``form_error_`` (its form error,
    and the candidates within noise of it, for the total interval).

    A table with a ``seed`` column is fitted on each cell's mean over its seeds, as by ``scaling fit`` and
    ``scaling backtest`` (``scaling.backtest.averaged_runs``); ``average_seeds=False`` uses every run."""
    from .backtest import averaged_runs

    data, columns, _ = averaged_runs(data, None, columns, average=average_seeds, dropna=dropna, who="auto")
    df = _frame(data, columns, dropna)
    if drop_highest_loss:
        from .data import prepare

        df = prepare(df, ["loss"], drop_highest_loss=drop_highest_loss)
    sel = select(df, candidates=candidates, target_N=target_N, target_C=target_C, by=by, levels=levels,
                 fixed=fixed, seed=seed, **common)
    spec = sel.chosen.spec(**common, bootstrap=bootstrap, seed=seed, level=level)
    result = spec.fit(df)
    fe = form_error_model(sel.errors[sel.chosen.label], sel.by, sel.x_max)
    pool = [k for k in sel.table.loc[sel.table["within_noise"], "candidate"] if k != sel.chosen.label]
    for k in pool:
        cand = sel.errors[k].candidate
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alt = cand.spec(**common, bootstrap=0).fit(df)
        except ScalingError:
            continue
        fe["alternatives"].append({"label": k, "law": cand.law, "params": dict(alt.params_)})
    return result._with_state(selection_=sel.to_dict(), form_error_=fe)


def with_form_error(result, data, *, by: str = "N", target: float | None = None, levels: int = LEVELS,
                    columns=None, dropna: bool = False):
    """``result`` with a form-error model from nested backtests of its own law and settings on ``data``
    (the runs it was fitted on), so that its total interval exists; ``result`` itself is not changed."""
    df = _frame(data, columns, dropna)
    x = size_of(df, by)
    distance = DEFAULT_DISTANCE if target is None else max(math.log10(target / x.max()), 0.0)
    law = result.law
    settings = {k: v for k, v in law.settings().items() if k not in ("bootstrap", "seed", "level")}
    cand = Candidate(law.name, law.name, settings)
    folds = nested_folds(df, by, distance, levels=levels)
    ne = nested_errors(cand, df, folds, by)
    if ne.failed:
        raise FitError(f"{law.name} {ne.failed}: no form-error model")
    return result._with_state(form_error_=form_error_model(ne, by, float(x.max())))


def selection_lines(sel: Mapping[str, Any]) -> list[str]:
    """The report's lines for a fit chosen by ``--law auto``."""
    lines = ["", f"law chosen by nested backtests (auto): {sel['chosen']}", f"  {sel['why']}", "",
             f"  {'candidate':<26}{'free':>5}{'exp. error':>12}{'nested rmse':>13}{'kappa':>9}{'as good':>9}"]
    for r in sel["candidates"]:
        if r.get("failed"):
            lines.append(f"  {r['candidate']:<26}{r['n_free']:>5}  failed: {r['failed']}")
            continue
        beat = "best" if r["beats_best"] is None else f"{100 * r['beats_best']:.0f}%"
        mark = " <- chosen" if r["chosen"] else (" (within noise)" if r["within_noise"] and r["beats_best"] is not None
                                                 else "")
        lines.append(f"  {r['candidate']:<26}{r['n_free']:>5}{100 * (math.exp(r['score']) - 1):>11.2f}%"
                     f"{100 * r['nested_rmse']:>12.2f}%{r['kappa']:>9.4f}{beat:>9}{mark}")
    return lines
