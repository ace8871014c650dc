"""The data-constrained law of Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models").

L(N, D, U) = E + A / N'^alpha + B / D'^beta with effective data and parameters

    D' = U + U R_D* (1 - exp(-R_D / R_D*)),      R_D = D/U - 1 (repeated epochs),
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  R_N = N/U_N - 1 (excess parameters),

where U_N = min(N, N_opt(U)) is the compute-optimal size for U tokens under the
base Chinchilla law. As in the paper the fit has two stages: the base law
(E, A, B, alpha = beta by default) on runs that see each token at most once, then
R_D* and R_N* on all runs with the base held fixed. A base law can also be given.
"""

from __future__ import annotations

import itertools
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd

from .._threads import limit_threads
from ..diagnostics import check_identification
from ..errors import DataError, FitError, ScalingError, SettingsError
from ..fitting.bootstrap import bootstrap, newton_refit
from ..fitting.optimize import FunctionModel, RobustObjective, newton_lm
from . import register_law
from .base import Law, Param
from .chinchilla import ChinchillaLaw
from .result import FitResult, params_state, uncertainty


def _g(R, s):
    """1 + s (1 - exp(-R/s)) and its derivative in log s."""
    x = R / s
    ex = np.exp(-x)
    g = 1.0 + s * (1.0 - ex)
    dg_dlogs = s * ((1.0 - ex) - x * ex)
    return g, dg_dlogs


def _unique_params(lE, lA, lB, alpha, beta, N, U):
    """U_N = min(N, G (G U)^(beta/alpha)) and R_N = N / U_N - 1, for each base parameter row."""
    G = np.exp((np.log(alpha) + lA - np.log(beta) - lB) / (alpha + beta))
    UN = np.minimum(N, G * (G * U) ** (beta / alpha))
    return UN, np.maximum(N / UN - 1.0, 0.0)


@register_law
class DataConstrainedLaw(Law):
    """L(N, D, U) of Muennighoff et al. 2023, with R_D* and R_N* the repetition half-lives."""

    name = "data-constrained"
    inputs = ("N", "D", "U")
    parameters = (
        Param("E", log=True), Param("A", log=True), Param("B", log=True), Param("alpha", lower=0.0), Param("beta", lower=0.0),
        Param("R_D_star", log=True, description="repeated epochs at which data value decays by 1/e"),
        Param("R_N_star", log=True, description="excess-parameter analogue for model size"),
    )
    formula: ClassVar[str] = "L = E + A/N'^alpha + B/D'^beta, D' = U(1 + R_D*(1-exp(-R_D/R_D*))), N' likewise"

    def __init__(self, *, base: FitResult | None = None, tie_exponents: bool = True,
                 starts: list[tuple[float, float]] | None = None, **kwargs):
        kwargs.setdefault("bootstrap", 200)
        self.base = base
        self.tie_exponents = tie_exponents
        self.starts = starts
        super().__init__(**kwargs)

    supports = frozenset({"loss", "delta", "fixed", "bounds", "tie", "prune"})
    BASE_PARAMS = ("E", "A", "B", "alpha", "beta")

    def _unsupported_reason(self) -> str:
        return "constraints are given as fixed/bounds/tie on the base law's parameters"

    def _check_settings(self) -> None:
        super()._check_settings()
        named = set(self.fixed) | set(self.bounds) | {n for t in self.tie for n in t}
        stage2 = sorted(named - set(self.BASE_PARAMS))
        if stage2:
            raise SettingsError(f"data-constrained constrains only the base law's {list(self.BASE_PARAMS)}; "
                                f"{stage2} are fitted in the second stage (pass starts=[(R_D*, R_N*), ...] to "
                                "steer them)")
        if self.base is not None and named:
            raise SettingsError("data-constrained: with a given base law there is nothing to fix, bound or tie in "
                                "it; set those on the base law instead")
        if self.base is not None and not (isinstance(self.base, FitResult)
                                          and isinstance(self.base.law, ChinchillaLaw)):
            raise SettingsError("base must be a ChinchillaLaw result with parameters (ChinchillaLaw(...).fit(data) "
                                "or ChinchillaLaw.from_params(...)), not a law spec")

    def _base_spec(self) -> ChinchillaLaw:
        """The Chinchilla law of the first stage, carrying this law's constraints and objective."""
        return ChinchillaLaw(tie_exponents=self.tie_exponents, loss=self.loss, delta=self.delta, fixed=self.fixed,
                             bounds=self.bounds, tie=self.tie, prune=self.prune, bootstrap=0)

    # ---------------------------------------------------------------- model
    def _log_predict(self, theta, X):
        theta = np.atleast_2d(theta)
        lE, lA, lB, al, be, lrd, lrn = (theta[:, i:i + 1] for i in range(7))
        N, D, U = X["N"][None, :], X["D"][None, :], X["U"][None, :]
        UN, RN = _unique_params(lE, lA, lB, al, be, N, U)
        RD = np.maximum(D / U - 1.0, 0.0)
        gD, _ = _g(RD, np.exp(lrd))
        gN, _ = _g(RN, np.exp(lrn))
        t1 = lA - al * (np.log(UN) + np.log(gN))
        t2 = lB - be * (np.log(U) + np.log(gD))
        return np.logaddexp(np.logaddexp(lE + 0 * t1, t1), t2)

    def _stage2_model(self, base_theta, X):
        """Model in (log R_D*, log R_N*) with the base law held at ``base_theta``."""
        lE, lA, lB, al, be = base_theta
        UN, RN = _unique_params(lE, lA, lB, al, be, X["N"], X["U"])
        RD = np.maximum(X["D"] / X["U"] - 1.0, 0.0)
        lUN, lU = np.log(UN), np.log(X["U"])

        def parts(theta):
            gD, dD = _g(RD[None, :], np.exp(theta[:, 0:1]))
            gN, dN = _g(RN[None, :], np.exp(theta[:, 1:2]))
            t1 = lA - al * (lUN + np.log(gN))
            t2 = lB - be * (lU + np.log(gD))
            pred = np.logaddexp(np.logaddexp(lE, t1), t2)
            return pred, np.exp(t1 - pred), np.exp(t2 - pred), gD, dD, gN, dN

        def log_pred(theta, _X):
            return parts(theta)[0]

        def jac(theta, _X):
            pred, w1, w2, gD, dD, gN, dN = parts(theta)
            return np.stack([-be * w2 * dD / gD, -al * w1 * dN / gN], axis=-1)

        return FunctionModel(log_pred, jac, X, 2)

    # ------------------------------------------------------------------ fit
    def _base_law(self, single_df: pd.DataFrame) -> tuple[FitResult, np.ndarray | None]:
        """The base Chinchilla law, given or fitted on runs that are unconstrained under it, and those runs.

        A run is unconstrained when it repeats no data (D <= U) and is no larger than the
        compute-optimal size for its unique tokens (N <= U_N); that set depends on the base
        law itself, so fit and reselect until it stops changing.
        """
        if self.base is not None:
            return self.base, None
        rows = np.ones(len(single_df), bool)
        law = None
        for _ in range(6):
            if rows.sum() < 6:
                raise DataError(
                    f"only {int(rows.sum())} run(s) repeat no data and are not oversized for their unique tokens; "
                    "the base law needs more such runs, or pass base=ChinchillaLaw.from_params(...) "
                    "(e.g. DataConstrainedLaw.muennighoff2023_base())")
            law = self._base_spec().fit(single_df[rows])
            UN, RN = _unique_params(*law.theta_, single_df["N"].to_numpy(float), single_df["U"].to_numpy(float))
            new = RN <= 1e-9
            if new.sum() < 6 or np.array_equal(new, rows):
                break
            rows = new
        return law, rows

    def _fit_stage2(self, base_theta, X, log_y, weights=None, start=None):
        model = self._stage2_model(base_theta, X)
        obj = RobustObjective(model, log_y, loss=self.loss, delta=self.delta, weights=weights)
        grid = self.starts or list(itertools.product((1.0, 3.0, 10.0, 30.0, 100.0), repeat=2))
        x0 = np.log(np.array(grid, float)) if start is None else np.atleast_2d(start)
        with np.errstate(all="ignore"):
            res = newton_lm(obj, x0, lower=np.log([1e-3, 1e-3]), upper=np.log([1e6, 1e6]), ftol=1e-12, max_iter=200)
        if not np.isfinite(res.fun).any():
            raise FitError("data-constrained: could not fit R_D*, R_N*")
        k = int(np.nanargmin(res.fun))
        return res.x[k], res.fun[k], res.converged[k]

    # ------------------------------------------------------------ published
    @classmethod
    def muennighoff2023(cls) -> FitResult:
        """The paper's C4 fit: base law from Chinchilla's C4 IsoFLOP data, R_D* 15.39, R_N* 5.31."""
        b = cls.muennighoff2023_base().params_
        return cls.from_params(**b, R_D_star=15.387756, R_N_star=5.309743).labelled("Muennighoff et al. 2023")

    @staticmethod
    def muennighoff2023_base() -> FitResult:
        """Their base law (alpha = beta), fitted to Hoffmann et al.'s C4 IsoFLOP points."""
        return ChinchillaLaw.from_params(E=float(np.exp(0.6254804)), A=float(np.exp(6.255414)),
                                         B=float(np.exp(7.3049974)), alpha=0.3526596, beta=0.3526596
                                         ).labelled("Muennighoff et al. 2023 (base law)")

    # ------------------------------------------------------------ allocation
    allocation_conditions = ("U",)
    allocation_options = ("flops",)

    def _allocate(self, theta, C, strict, U=None, flops=None):
        """Loss-minimising N and D = C / (k N) for compute ``C`` when only ``U`` unique tokens exist.

        A grid over log N, then (for the point estimate) a bounded scalar minimisation around the
        grid's best, or (for bootstrap samples) the vertex of a parabola through the three best."""
        from scipy.optimize import minimize_scalar  # imported here: `import scaling.laws` stays light

        k = 6.0 if flops is None else float(flops)
        U = np.broadcast_to(np.asarray(U, float), C.shape)
        if np.any(~np.isfinite(U)) or np.any(U <= 0):
            raise DataError(f"U (unique tokens) must be finite and positive, got {U[:3]}")
        K = len(theta)
        N = np.empty((K, C.size))
        for i, (c, u) in enumerate(zip(C, U)):
            grid = np.linspace(np.log(c / k) / 2 - 12, np.log(c / k) / 2 + 12, 481)
            X = {"N": np.exp(grid), "D": c / (k * np.exp(grid)), "U": np.full(grid.size, u)}
            lp = self._log_predict(theta, X)
            j = np.clip(np.nanargmin(np.where(np.isfinite(lp), lp, np.inf), axis=1), 1, grid.size - 2)
            if K == 1:
                one = theta[:1]
                res = minimize_scalar(
                    lambda x: float(self._log_predict(one, {"N": np.exp([x]), "D": np.array([c / (k * np.exp(x))]),
                                                            "U": np.array([u])})[0, 0]),
                    bounds=(grid[j[0] - 1], grid[j[0] + 1]), method="bounded", options={"xatol": 1e-10})
                N[0, i] = np.exp(res.x)
                continue
            rows = np.arange(K)
            y0, y1, y2 = lp[rows, j - 1], lp[rows, j], lp[rows, j + 1]
            h = grid[1] - grid[0]
            den = y0 - 2 * y1 + y2
            shift = np.where(den > 0, 0.5 * h * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0)
            N[:, i] = np.exp(grid[j] + np.clip(shift, -h, h))
        D = C[None, :] / (k * N)
        L = np.stack([np.exp(self._log_predict(theta[q:q + 1], {"N": N[q], "D": D[q], "U": U})[0]) for q in range(K)])
        return {"N_opt": N, "D_opt": D, "loss": L, "epochs": D / U[None, :]}


def estimate_data_constrained(law: DataConstrainedLaw, data, *, columns=None, drop_highest_loss: int = 0,
                              dropna: bool = False) -> dict:
    """The two-stage estimator: the base law (given, or fitted on the runs that repeat no data), then
    R_D* and R_N* with the base held fixed. The bootstrap redoes both stages on each resample: the
    base refits of all resamples at once, then stage 2 on each."""
    df = law._frame(data, columns=columns, dropna=dropna, drop_highest_loss=drop_highest_loss)
    if (df["D"] < df["U"] * (1 - 1e-9)).any():
        n = int((df["D"] < df["U"] * (1 - 1e-9)).sum())
        raise DataError(f"{n} run(s) have fewer training tokens D than unique tokens U; U counts the unique "
                        "tokens actually seen, so U <= D (check the U column)")
    X = {c: df[c].to_numpy(float) for c in law.inputs}
    log_y = np.log(df["loss"].to_numpy(float))
    law._check_data(X)
    single = X["D"] <= X["U"] * (1 + 1e-9)
    with limit_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base, base_rows = law._base_law(df[single])
    base_theta = base.theta_
    theta2, f2, conv = law._fit_stage2(base_theta, X, log_y)
    st = params_state(law, np.concatenate([base_theta, theta2]))
    n2 = len(law.starts) if law.starts else 25
    st.update(objective_=float(f2), converged_=bool(conv), n_points_=int(len(df)),
              residuals_=log_y - law._log_predict(st["theta_"][None, :], X)[0],
              data_range_={c: [float(X[c].min()), float(X[c].max())] for c in law.inputs})
    if base_rows is not None:
        st["base_rows_"] = base_rows
    st["fit_info_"] = {"loss": law.loss, "delta": law.delta, "n_starts_stage2": n2,
                       "procedure": ("stage 1: the base law " + ("given" if law.base is not None else
                                     "fitted (Chinchilla, full start grid) on the runs that repeat no data") +
                                     f"; stage 2: R_D*, R_N* from {n2} starts with the base held fixed"),
                       "base": "given" if law.base is not None else f"fitted on {int(base_rows.sum())} unconstrained runs",
                       "free": ["R_D_star", "R_N_star"] + ([] if law.base is not None else base.fit_info_["free"])}
    st["bootstrap_theta_"] = None
    if law.bootstrap:
        rows = single.copy()
        if law.base is None:
            rows[single] = base_rows
        st["bootstrap_theta_"] = bootstrap(law.name, law.bootstrap, law.seed,
                                           lambda W: _refit_both_stages(law, X, log_y, rows, base, st["theta_"][5:], W),
                                           n=log_y.size, batched=True).theta
    uncertainty(law, st)
    check_identification(law.name, {k: st["params_"][k] for k in ("R_D_star", "R_N_star")}, st["ci_"], law.level)
    return st


def _refit_both_stages(law: DataConstrainedLaw, X, log_y, single, base: FitResult, start, W):
    """Each row of weights W: the base law refitted on its single-epoch runs (all rows at once), then stage 2."""
    B = len(W)
    with limit_threads(1), np.errstate(all="ignore"):
        if law.base is None:
            sub = {c: X[c][single] for c in ("N", "D")}
            chin = law._base_spec()
            transform, lo, hi, _ = chin.constraints()
            boot = newton_refit(chin._model(sub), log_y[single], transform.to_phi(base.theta_), W[:, single],
                                loss=law.loss, delta=law.delta, transform=transform, lower=lo, upper=hi)
            bases, ok = transform.to_theta(boot.x), np.isfinite(boot.fun)
        else:
            bases, ok = np.repeat(base.theta_[None, :], B, axis=0), np.ones(B, bool)
        theta = np.full((B, len(law.parameters)), np.nan)
        for b in np.flatnonzero(ok):
            try:
                theta[b] = np.concatenate([bases[b], law._fit_stage2(bases[b], X, log_y, weights=W[b], start=start)[0]])
            except (ScalingError, np.linalg.LinAlgError):
                ok[b] = False
    return theta, ok, None


DataConstrainedLaw.estimator = staticmethod(estimate_data_constrained)
