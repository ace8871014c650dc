"""Shared pieces of Chinchilla Approaches 1 and 2.

Both approaches first find, for each compute budget C, the compute-optimal
model size N*(C), tokens D*(C) and loss L*(C) from the runs, then fit
N* = N0 C^a, D* = D0 C^b (least squares in log space) and L* = E + A C^-alpha
(robust, as the parametric law). They differ only in how the optima are found.
The fitted object predicts L*(C) and allocates compute; its uncertainty is a
bootstrap over runs that repeats the whole procedure.
"""

from __future__ import annotations

import itertools
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd

from ..diagnostics import check_floor, check_identification
from ..errors import FitError, ScalingWarning, SettingsError
from ..fitting.bootstrap import bootstrap
from .._threads import limit_threads
from ..fitting.optimize import LogSumExpModel, ParamTransform, RobustObjective, newton_lm
from .base import Law, Param
from .result import params_state, uncertainty


class OptimalLoss(Law):
    """L*(C) = E + A / C^alpha, fitted to per-budget optimal losses (not registered)."""

    name = "optimal-loss"
    inputs = ("C",)
    parameters = (Param("E", log=True), Param("A", log=True), Param("alpha", lower=0.0))
    formula: ClassVar[str] = "L*(C) = E + A/C^alpha"

    def _model(self, X):
        lC = np.log(X["C"])
        d = np.zeros((lC.size, 2, 3))
        d[:, 0, 0] = 1.0
        d[:, 1, 1], d[:, 1, 2] = 1.0, -lC
        return LogSumExpModel(d)

    def _log_predict(self, theta, X):
        return self._model(X).evaluate(np.atleast_2d(theta), jac=False)[0]

    def _init_grid(self, X, log_y):
        e = np.log(np.array([0.25, 0.5, 0.75, 0.9]) * np.exp(log_y.min()))
        return np.array(list(itertools.product(e, np.arange(0.0, 40.1, 5.0), (0.02, 0.05, 0.1, 0.2, 0.4))), float)


def _fit_optimal_loss(C: np.ndarray, L: np.ndarray, warm: np.ndarray | None = None, *, loss: str = "huber",
                      delta: float = 1e-3) -> np.ndarray:
    """(log E, log A, alpha) of L = E + A C^-alpha, Huber on log residuals; E -> 0 with under 4 budgets."""
    law = OptimalLoss()
    X = {"C": C}
    log_y = np.log(L)
    if len(C) >= 4:
        transform = ParamTransform.identity(3)
    else:  # too few points for an offset: a pure power law
        transform = ParamTransform(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([np.log(1e-9 * L.min()), 0, 0]))
    starts = law._init_grid(X, log_y) if warm is None else np.atleast_2d(warm)
    obj = RobustObjective(law._model(X), log_y, loss=loss, delta=delta, transform=transform)
    with limit_threads(1), np.errstate(all="ignore"):
        res = newton_lm(obj, np.unique(transform.to_phi(starts), axis=0), ftol=1e-12, max_iter=150)
    if not np.isfinite(res.fun).any():
        raise FitError("could not fit L_opt(C) = E + A C^-alpha to the per-budget optima")
    return transform.to_theta(res.x[int(np.nanargmin(res.fun))])


def loglinear_fit(x: np.ndarray, y: np.ndarray, slope: float | None = None) -> tuple[float, float]:
    """Least-squares slope and intercept of log y on log x (the intercept alone when ``slope`` is given)."""
    if slope is not None:
        return float(slope), float(np.mean(np.log(y) - slope * np.log(x)))
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(icpt)


class AllocationLaw(Law):
    """Base of the `isoflop` and `envelope` laws: N*, D*, L* as functions of C."""

    inputs = ("C",)
    parameters = (
        Param("a", description="N_opt exponent"), Param("N0", log=True, description="N_opt = N0 C^a"),
        Param("b", description="D_opt exponent"), Param("D0", log=True, description="D_opt = D0 C^b"),
        Param("E", log=True), Param("A", log=True), Param("alpha", lower=0.0),
    )
    formula: ClassVar[str] = "N_opt = N0 C^a, D_opt = D0 C^b, L_opt = E + A C^-alpha"
    min_budgets: ClassVar[int] = 2
    supports = frozenset({"loss", "delta", "fixed"})
    #: how each budget's optimum is found (for the report)
    optimum_method: ClassVar[str] = ""

    def _unsupported_reason(self) -> str:
        return ("the allocation exponents come from log-linear fits of per-budget optima; fix a or b "
                "(fixed={'a': 0.5}), or choose the loss of the L_opt(C) fit")

    def _check_settings(self) -> None:
        super()._check_settings()
        other = [k for k in self.fixed if k not in ("a", "b")]
        if other:
            raise SettingsError(f"{self.name} can fix the allocation exponents a and b, not {other}")
        if "a" in self.fixed and "b" in self.fixed and abs(self.fixed["a"] + self.fixed["b"] - 1) > 1e-9:
            raise SettingsError(f"{self.name}: fixed a + b = {self.fixed['a'] + self.fixed['b']:g}, but optima that "
                                "spend their budget (C = k N D) have a + b = 1; fix one of them")

    def __init__(self, *, bootstrap: int = 200, seed: int = 0, level: float = 0.9, flops_per_token_param: float = 6.0,
                 **kwargs):
        super().__init__(bootstrap=bootstrap, seed=seed, level=level, **kwargs)
        self.flops_per_token_param = flops_per_token_param

    # subclasses: optima(df) -> DataFrame with C, N_opt, D_opt, loss_opt (accepted budgets) + all budgets' status
    def _optima(self, df: pd.DataFrame, quiet: bool = False) -> pd.DataFrame:
        raise NotImplementedError

    def _resample(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        raise NotImplementedError

    def _prepare_data(self, data, columns=None, dropna=False, drop_highest_loss=0) -> pd.DataFrame:
        raise NotImplementedError

    def _sampler(self, df: pd.DataFrame, opt: pd.DataFrame):
        """The bootstrap's draw: ``sampler(rng, B)`` -> B resampled tables (by default ``_resample`` B times);
        ``opt`` is the point fit's per-budget optima."""
        return lambda rng, B: [self._resample(df, rng) for _ in range(B)]

    def _bootstrap_over(self, df: pd.DataFrame) -> str:
        return "runs"

    def _fit_optima(self, opt: pd.DataFrame, warm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ok = opt[opt["status"] == "ok"]
        if len(ok) < self.min_budgets:
            raise FitError(
                f"{self.name}: only {len(ok)} usable compute budget(s) ({self._status_summary(opt)}); "
                f"need at least {self.min_budgets} to fit how N_opt scales with C"
            )
        C = ok["C"].to_numpy(float)
        if self.fixed:  # every optimum spends its budget, N_opt D_opt = C / k: a + b = 1, N0 D0 = 1 / k
            fa = self.fixed["a"] if "a" in self.fixed else 1.0 - self.fixed["b"]
            a, lN0 = loglinear_fit(C, ok["N_opt"].to_numpy(float), fa)
            b, lD0 = 1.0 - a, -np.log(self.flops_per_token_param) - lN0
        else:
            a, lN0 = loglinear_fit(C, ok["N_opt"].to_numpy(float))
            b, lD0 = loglinear_fit(C, ok["D_opt"].to_numpy(float))
        L = ok["loss_opt"].to_numpy(float)
        lopt = _fit_optimal_loss(C, L, None if warm is None else warm[4:], loss=self.loss, delta=self.delta)
        theta = np.array([a, lN0, b, lD0, *lopt])
        resid = np.log(L) - np.logaddexp(lopt[0], lopt[1] - lopt[2] * np.log(C))
        return theta, resid

    def _unused_budgets_message(self, opt: pd.DataFrame) -> str:
        bad = opt[opt["status"] != "ok"]
        return f"{self.name}: {len(bad)} budget(s) not used: {self._status_summary(opt)}"

    @staticmethod
    def _status_summary(opt: pd.DataFrame) -> str:
        bad = opt[opt["status"] != "ok"]
        if bad.empty:
            return "all budgets usable"
        parts = []
        for status, g in bad.groupby("status", sort=False):  # one line per reason, a few budgets named
            Cs = [f"{c:.3g}" for c in g["C"]]
            parts.append(f"C={', '.join(Cs[:3])}" + (f" and {len(Cs) - 3} more" if len(Cs) > 3 else "") + f": {status}")
        hint = ("; each budget holds about one run: an N x D grid rather than IsoFLOP profiles (fit the parametric law, "
                "--law chinchilla)" if len(bad) >= 5 and (bad["status"].str.contains("only 1 model size")).mean() > 0.8
                else "")
        return "; ".join(parts) + hint

    def _log_predict(self, theta, X):
        lC = np.log(X["C"])[None, :]
        lE, lA, alpha = theta[:, 4:5], theta[:, 5:6], theta[:, 6:7]
        return np.logaddexp(lE, lA - alpha * lC)

    def _allocate(self, theta, C, strict):
        P = self._to_public(theta)
        Cr = C[None, :]
        N = P[:, 1:2] * Cr ** P[:, 0:1]
        D = P[:, 3:4] * Cr ** P[:, 2:3]
        return {"N_opt": N, "D_opt": D, "loss": np.exp(self._log_predict(theta, {"C": C}))}

    def _allocation_exponents(self, theta):
        P = self._to_public(theta)
        return {"a": P[:, 0], "b": P[:, 2]}

    def _summary_extra(self, fit):
        p = fit._state["params_"]
        d = {"a": p["a"], "b": p["b"], "N0": p["N0"], "D0": p["D0"]}
        ci = fit.allocation_exponent_intervals()
        if ci:
            d["ci"] = ci
        out = {"compute_optimal": d}
        if "profiles_" in fit._state:
            out["profiles"] = fit._state["profiles_"].replace({np.nan: None}).to_dict(orient="records")
        return out

    def _report_extra(self, fit):
        lines = ["", "per-budget optima:"]
        if "profiles_" in fit._state:
            for r in fit._state["profiles_"].itertuples():
                if r.status == "ok":
                    lines.append(f"  C={r.C:10.3g}  N_opt={r.N_opt:10.3g}  D_opt={r.D_opt:10.3g}  loss={r.loss_opt:.4f}")
                else:
                    lines.append(f"  C={r.C:10.3g}  not used: {r.status}")
        return lines

    def _restore_extra(self, d):
        self.flops_per_token_param = d.get("settings", {}).get("flops_per_token_param", 6.0)
        return {"profiles_": pd.DataFrame(d["profiles"])} if d.get("profiles") else {}

    def _settings_extra(self):
        return {"flops_per_token_param": self.flops_per_token_param}


def estimate_allocation(law: AllocationLaw, data, *, columns=None, drop_highest_loss: int = 0,
                        dropna: bool = False) -> dict:
    """The estimator of the IsoFLOP and envelope laws: per-budget optima, then N_opt, D_opt and L_opt
    as functions of C; the bootstrap repeats the whole procedure on runs resampled as the law says."""
    df = law._prepare_data(data, columns=columns, dropna=dropna, drop_highest_loss=drop_highest_loss)
    opt = law._optima(df)
    bad = opt[opt["status"] != "ok"]
    if len(bad):
        warnings.warn(law._unused_budgets_message(opt), ScalingWarning, stacklevel=2)
    theta, resid = law._fit_optima(opt)
    st = params_state(law, theta)
    ok = opt[opt["status"] == "ok"]
    loss_fit = law.loss if law.loss != "huber" else f"huber (delta={law.delta:g})"
    fixed = ", ".join(f"{k} = {v:g}" for k, v in law.fixed.items())
    st.update(
        profiles_=opt, residuals_=resid, objective_=float(np.sum(resid**2)), converged_=True,
        n_points_=int(df["run"].nunique()) if "run" in df.columns else int(len(df)),
        data_range_={"C": [float(ok["C"].min()), float(ok["C"].max())]},
        fit_info_={"n_budgets": int(len(opt)), "n_budgets_used": int(len(ok)), "loss": "least squares (log)",
                   "free": [n for n in law.param_names() if not (law.fixed and n in ("a", "b", "D0"))],
                   "loss_opt_fit": loss_fit,
                   "procedure": f"{law.optimum_method} on {len(ok)} of {len(opt)} budgets; N_opt and D_opt by "
                                "least squares in log C" + (f" with {fixed} fixed (b = 1 - a and D0 = 1/(k N0): "
                                                            "optima spend their budget)" if law.fixed else "")
                                + f"; L_opt(C) = E + A C^-alpha by a {loss_fit} fit",
                   "unit": "runs"})
    st["bootstrap_theta_"] = None
    if law.bootstrap:
        try:
            sampler = law._sampler(df, opt)
        except FitError as exc:  # nothing to resample (e.g. no residual degrees of freedom): no interval
            warnings.warn(f"{exc}; the fit has no intervals", ScalingWarning, stacklevel=3)
            st["fit_info_"]["bootstrap_over"] = f"nothing: {str(exc).removeprefix(law.name + ': ')}"
        else:
            with limit_threads(1):
                st["bootstrap_theta_"] = bootstrap(
                    law.name, law.bootstrap, law.seed,
                    lambda sample: law._fit_optima(law._optima(sample, quiet=True), warm=theta)[0],
                    sampler=sampler, why="had too few usable budgets").theta
            st["fit_info_"]["bootstrap_over"] = law._bootstrap_over(df)
    uncertainty(law, st)
    p = st["params_"]
    check_identification(law.name, {k: p[k] for k in ("a", "b")}, st["ci_"], law.level)
    if abs(p["a"] + p["b"] - 1) > 0.1:
        warnings.warn(f"{law.name}: a + b = {p['a'] + p['b']:.3f}, far from 1: the "
                      "runs do not satisfy C = 6 N D; check the C and D columns", ScalingWarning, stacklevel=3)
    check_floor(law.name, p, float(ok["loss_opt"].min()))
    return st


AllocationLaw.estimator = staticmethod(estimate_allocation)
