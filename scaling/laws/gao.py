"""Reward-model overoptimization laws (Gao, Schulman & Hilton 2022).

With d = sqrt(KL(pi || pi_init)) and the gold reward measured from the initial
policy's mean (so R(0) = 0):

* best-of-n: ``R(d) = d (alpha - beta d)``, peak at d* = alpha / (2 beta)
* RL:        ``R(d) = d (alpha - beta log d)``, peak at d* = exp(alpha / beta - 1)

and the coefficients move smoothly with the proxy reward model's size. One fit
covers all sizes in the data: ``alpha(N) = alpha + alpha_slope log10(N / n_ref)``
and the same for beta (``shared_alpha=True`` fixes ``alpha_slope = 0``, as Gao
et al. found for RL). Both forms are linear in their four parameters, so the fit
is exact weighted least squares. Per-size fits (two parameters each) are
reported beside it, for the gold and, where present, the proxy score.

Uncertainty: with a ``prompt`` column (one row per prompt and point) the
bootstrap resamples prompts; otherwise it resamples residuals within each
reward-model size. The KL of each point is taken as known.

Data: one row per (method, rm_params, point) with ``d`` (or ``kl``) and ``gold``;
rows of other methods are ignored when a ``method`` column exists. Negative KL
estimates (estimator noise) are reported and left out, never square-rooted.
A reward model whose held-out accuracy does not beat chance (``rm_accuracy`` and
``rm_n_eval`` columns) is reported and left out: there is no law in noise.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..data import first_row, parse_columns, read_table
from ..diagnostics import at_chance, check_extrapolation
from ..errors import DataError, FitError, ScalingWarning, SettingsError
from ..fitting.bootstrap import bootstrap, percentile_interval
from . import register_law
from .base import Law, Param
from .result import FitResult, additive_band, params_state, uncertainty


def _xlogx(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, float)
    return np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)


class GaoLaw(Law):
    """Shared machinery of ``gao-bon`` and ``gao-rl``; subclasses give the curvature term and the peak."""

    inputs: ClassVar[tuple[str, ...]] = ("d", "rm_params")
    target: ClassVar[str] = "gold"
    method: ClassVar[str] = ""
    parameters = (
        Param("alpha", description="slope at d = 0 for an RM of n_ref parameters"),
        Param("alpha_slope", description="change of alpha per decade of RM parameters"),
        Param("beta", description="curvature for an RM of n_ref parameters"),
        Param("beta_slope", description="change of beta per decade of RM parameters"),
    )
    nonnegative_inputs = ("d",)

    def __init__(self, *, shared_alpha: bool = False, n_ref: float | None = None, score: str = "gold",
                 kl_penalty: float | None = None, max_d: float | None = None, rm_data: float | None = None,
                 **kwargs):
        self.shared_alpha = shared_alpha
        self.n_ref = n_ref  # the setting (None: the geometric mean of the sizes); the fit resolves n_ref_
        super().__init__(**kwargs)
        if max_d is not None and not (isinstance(max_d, (int, float)) and max_d > 0):
            raise SettingsError(f"max_d (the largest sqrt(KL) to fit) must be positive, got {max_d!r}")
        if score not in ("gold", "proxy"):
            raise SettingsError(f"score must be 'gold' or 'proxy', got {score!r}")
        self.score = score
        self.kl_penalty = kl_penalty
        self.max_d = max_d
        self.rm_data = rm_data

    supports = frozenset({"fixed"})
    default_loss = "squared"
    figure = "overopt"

    def _unsupported_reason(self) -> str:
        return ("the gao laws are linear in their coefficients and fitted by exact least squares; "
                "only fixed coefficients are supported")

    # ------------------------------------------------------------- the form
    @staticmethod
    def _curvature(d: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _peak(alpha, beta):
        raise NotImplementedError

    def _design(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        q = -self._curvature(d)
        return np.stack([d, d * x, q, q * x], axis=1)

    @staticmethod
    def _x(rm_params, n_ref: float) -> np.ndarray:
        return np.log10(np.asarray(rm_params, float) / n_ref)

    def _value(self, theta: np.ndarray, d, rm_params, n_ref: float) -> np.ndarray:
        """Predictions (K, n) for K parameter vectors, with the RM size measured from ``n_ref``."""
        A = self._design(np.asarray(d, float), self._x(rm_params, n_ref))
        return np.atleast_2d(theta) @ A.T

    # ------------------------------------------------------------- the data
    def _table(self, data, columns=None) -> pd.DataFrame:
        df = read_table(data) if not isinstance(data, pd.DataFrame) else data.copy()
        if columns:
            df = df.rename(columns={v: k for k, v in parse_columns(columns).items()})
        if "method" in df.columns:
            methods = sorted(map(str, df["method"].dropna().unique()))
            df = df[df["method"].astype(str) == self.method]
            if df.empty:
                raise DataError(f"{self.name} fits rows with method == {self.method!r}; the data has methods {methods}")
        if self.kl_penalty is None and "kl_penalty" in df.columns and df["kl_penalty"].nunique() > 1:
            pens = sorted(float(v) for v in df["kl_penalty"].dropna().unique())
            warnings.warn(f"{self.name}: the data hold runs with KL penalties {pens}, fitted together as one curve; "
                          "fit one at a time with kl_penalty=... (the CLI's --kl-penalty)", ScalingWarning, stacklevel=3)
        df = self._only(df, "kl_penalty", self.kl_penalty)
        if self.rm_data is None and "rm_data" in df.columns and df["rm_data"].nunique() > 1:
            sizes = sorted(int(v) for v in df["rm_data"].unique())
            raise DataError(f"{self.name}: the data mixes reward models trained on {sizes} preference pairs; "
                            "fit one training-set size at a time (rm_data=..., the CLI's --rm-data)")
        df = self._only(df, "rm_data", self.rm_data)
        if "d" not in df.columns:
            if "kl" not in df.columns:
                raise DataError(f"{self.name}: missing column 'd' (sqrt of the KL from the initial policy) "
                                f"or 'kl'; columns are {list(df.columns)}")
            df["d"] = np.nan
        for c in ("rm_params", self.score):
            if c not in df.columns:
                raise DataError(f"{self.name}: missing column {c!r}; columns are {list(df.columns)}")
        df = df.copy()
        if "kl" in df.columns:
            kl = pd.to_numeric(df["kl"], errors="coerce")
            neg = kl < 0
            if neg.any():
                warnings.warn(f"{self.name}: {int(neg.sum())} row(s) have a negative KL estimate (as low as "
                              f"{kl[neg].min():.3g}: estimator noise near the initial policy); they are left out "
                              "rather than taking the square root of a negative", ScalingWarning, stacklevel=3)
                df = df[~neg]
                kl = kl[~neg]
            df["d"] = np.where(df["d"].isna(), np.sqrt(kl.clip(lower=0)), df["d"])
        for c in ("d", "rm_params", self.score):
            v = pd.to_numeric(df[c], errors="coerce")
            if v.isna().any():
                bad = df.loc[v.isna(), c].head(3).tolist()
                raise DataError(f"{self.name}: {int(v.isna().sum())} row(s) have missing or non-numeric values in "
                                f"column {c!r}, e.g. {bad} (first at row {first_row(v.isna())}, counting the "
                                "table's rows from 0)")
            df[c] = v.astype(float)
        if (df["d"] < 0).any():
            raise DataError(f"{self.name}: d = sqrt(KL) cannot be negative; got {df.loc[df['d'] < 0, 'd'].min():.3g}")
        if (df["rm_params"] <= 0).any():
            raise DataError(f"{self.name}: rm_params must be positive parameter counts")
        if not np.isfinite(df[self.score]).all():
            raise DataError(f"{self.name}: the {self.score} column has non-finite values")
        return self._drop_chance_rms(df)

    def _only(self, df: pd.DataFrame, column: str, value: float | None) -> pd.DataFrame:
        """Rows where ``column`` equals ``value`` (all rows when either is absent)."""
        if value is None or column not in df.columns:
            return df
        picked = df[np.isclose(df[column].astype(float), value)]
        if picked.empty:
            have = sorted(df[column].astype(float).dropna().unique())
            raise DataError(f"no {self.method} rows with {column} == {value:g}; the {self.method} rows have {column} "
                            f"{', '.join(f'{v:g}' for v in have) or '(none)'}")
        return picked

    def _drop_chance_rms(self, df: pd.DataFrame) -> pd.DataFrame:
        if not {"rm_accuracy", "rm_n_eval"} <= set(df.columns):
            return df
        acc = df.groupby("rm_params")[["rm_accuracy", "rm_n_eval"]].first()
        chance = pd.Series(at_chance(acc["rm_accuracy"], acc["rm_n_eval"]), index=acc.index)
        if chance.any():
            bad = ", ".join(f"{int(n):,} params ({a:.1%} on {int(m)} pairs)"
                            for n, a, m in zip(acc.index[chance], acc["rm_accuracy"][chance], acc["rm_n_eval"][chance]))
            if chance.all():
                raise FitError(f"{self.name}: no reward model beats chance on held-out pairs ({bad}); there is no "
                               "overoptimization law to fit in noise (more or cleaner preference data, larger RMs)")
            warnings.warn(f"{self.name}: reward model(s) at chance on held-out pairs are left out: {bad}",
                          ScalingWarning, stacklevel=3)
            df = df[~df["rm_params"].isin(acc.index[chance])]
        return df

    # -------------------------------------------------------------- fitting
    def _free(self, n_sizes: int) -> np.ndarray:
        free = np.ones(4, bool)
        if self.shared_alpha or n_sizes < 2 or "alpha_slope" in self.fixed:
            free[1] = False
        if n_sizes < 2 or "beta_slope" in self.fixed:
            free[3] = False
        for i, name in enumerate(self.param_names()):
            if name in self.fixed and name not in ("alpha_slope", "beta_slope"):
                free[i] = False
        return free

    def _fixed_theta(self) -> np.ndarray:
        return np.array([float(self.fixed.get(n, 0.0)) for n in self.param_names()])

    def _solve(self, A: np.ndarray, y: np.ndarray, W: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Weighted least squares for each row of weights W (K, n); returns (K, 4)."""
        base = self._fixed_theta()
        r = y - A[:, ~free] @ base[~free]
        Af = A[:, free]
        out = np.tile(base, (len(W), 1))
        for k, w in enumerate(W):
            sw = np.sqrt(w)
            sol, *_ = np.linalg.lstsq(Af * sw[:, None], r * sw, rcond=None)
            out[k, free] = sol
        return out

    def _per_size(self, df, resamples) -> list[dict]:
        out = []
        scores = [self.score] + [s for s in ("proxy",) if s in df.columns and s != self.score]
        for size in np.sort(df["rm_params"].unique()):
            m = (df["rm_params"] == size).to_numpy()
            d = df["d"].to_numpy()[m]
            A2 = np.stack([d, -self._curvature(d)], axis=1)
            row: dict[str, Any] = {"rm_params": int(size), "n_points": int(m.sum()), "d_max": float(d.max())}
            if len(d) < 3 or np.unique(d).size < 2:
                out.append(row)
                continue
            for s in scores:
                y = df[s].to_numpy(float)[m]
                coef, *_ = np.linalg.lstsq(A2, y, rcond=None)
                a, b = map(float, coef)
                pk = self._peak_summary(a, b)
                key = "" if s == self.score else f"{s}_"
                row.update({f"{key}alpha": a, f"{key}beta": b})
                if s != self.score:
                    continue
                row.update(pk)
                row["peak_in_data"] = bool(pk["d_star"] is not None and pk["d_star"] <= d.max())
                if resamples is not None:
                    sw = np.sqrt(resamples[0][:, m])
                    bs = np.stack([np.linalg.lstsq(A2 * s_k[:, None], y_k[m] * s_k, rcond=None)[0]
                                   for s_k, y_k in zip(sw, resamples[1])])
                    for j, name in enumerate(("alpha", "beta")):
                        lo, hi = percentile_interval(bs[:, j:j + 1], self.level)
                        row[f"{name}_ci"] = [float(lo[0]), float(hi[0])]
                    row.update({f"{k}_ci": v for k, v in self._peak_intervals(bs[:, 0], bs[:, 1]).items()})
            out.append(row)
        return out

    def _peak_summary(self, alpha: float, beta: float) -> dict:
        d_star = self._peak(alpha, beta)
        if d_star is None or not np.isfinite(d_star):
            return {"d_star": None, "gold_star": None, "kl_star": None}
        gold = alpha * d_star - beta * float(self._curvature(d_star))
        return {"d_star": float(d_star), "gold_star": float(gold), "kl_star": float(d_star ** 2)}

    def _peak_intervals(self, alphas, betas) -> dict[str, list]:
        """Percentile intervals of d*, gold* and KL* over bootstrap coefficients (no peak counts as infinite)."""
        peaks = [self._peak_summary(float(a), float(b)) for a, b in zip(alphas, betas)]
        out = {}
        for name in ("d_star", "gold_star", "kl_star"):
            v = np.array([p[name] if p[name] is not None else np.inf for p in peaks])
            with np.errstate(invalid="ignore"):
                lo, hi = np.quantile(v, [(1 - self.level) / 2, (1 + self.level) / 2])
            out[name] = [float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None]
        return out

    # ------------------------------------------------------------ predicting
    def _predict(self, fit, X):
        """Gold (or the fitted score) at d = sqrt(KL) for reward models of ``rm_params`` parameters."""
        rng = fit._state.get("data_range_") or {}
        check_extrapolation(self.name, {"rm_params": X["rm_params"]}, rng)  # d: judged below, by its own measure
        d = np.asarray(X["d"], float)
        if "d" in rng and d.size and np.nanmax(d) > D_BEYOND * rng["d"][1]:
            warnings.warn(f"{self.name}: predicting at d = sqrt(KL) = {np.nanmax(d):.3g}, beyond the largest d measured "
                          f"({rng['d'][1]:.3g}): the law's shape there (where gold turns down, and how far) is not in "
                          "the data; treat the number with care", ScalingWarning, stacklevel=3)
        return self._value(fit._state["theta_"], X["d"], X["rm_params"], fit._state["n_ref_"])[0]

    def _predict_interval(self, fit, X, level, kind):
        """Bootstrap band of a new measurement (``prediction``: a centred residual added) or of the curve
        (``mean``), on the score's own scale."""
        v = self._value(fit._state["bootstrap_theta_"], X["d"], X["rm_params"], fit._state["n_ref_"])
        return additive_band(fit, v, level, kind)

    # ------------------------------------------------------------- reporting
    def _summary_extra(self, fit) -> dict[str, Any]:
        return {"n_ref": fit._state["n_ref_"], "per_size": copy.deepcopy(fit._state.get("per_size_", []))}

    def _report_extra(self, fit) -> list[str]:
        lines = [f"  alpha(N) = alpha + alpha_slope log10(N / {fit._state['n_ref_']:,.0f}); beta(N) likewise", "",
                 "  per-size fits (peak: d* = sqrt(KL) where gold is highest; '>data' = beyond the largest d measured)",
                 f"  {'RM params':>12}{'alpha':>9}{'beta':>9}{'d*':>10}{'KL*':>10}{'gold*':>10}{'d max':>8}"]
        for r in fit._state.get("per_size_", []):
            if "alpha" not in r:
                lines.append(f"  {r['rm_params']:>12,}  (too few points)")
                continue
            if r["d_star"] is None:
                pk = f"{'no peak':>10}{'':>10}{'':>10}"
            elif not r.get("peak_in_data", True):
                pk = f"{'>data':>10}{'':>10}{'':>10}"
            else:
                pk = f"{r['d_star']:10.3g}{r['kl_star']:10.3g}{r['gold_star']:10.3g}"
            lines.append(f"  {r['rm_params']:>12,}{r['alpha']:9.3f}{r['beta']:9.3f}{pk}{r['d_max']:8.2f}")
        return lines

    def _settings_extra(self) -> dict[str, Any]:
        return {"shared_alpha": self.shared_alpha, "n_ref": self.n_ref, "score": self.score,
                "kl_penalty": self.kl_penalty, "max_d": self.max_d, "rm_data": self.rm_data}

    def _restore_extra(self, d: Mapping[str, Any]) -> dict[str, Any]:
        s = d.get("settings", {})
        self.shared_alpha = bool(s.get("shared_alpha", False))
        self.n_ref = s.get("n_ref")
        self.score = s.get("score", "gold")
        self.kl_penalty = s.get("kl_penalty")
        self.max_d = s.get("max_d")
        self.rm_data = s.get("rm_data")
        # the resolved n_ref (files before n_ref_ kept it in settings)
        return {"n_ref_": d.get("n_ref", s.get("n_ref")), "per_size_": d.get("per_size", [])}

    @classmethod
    def from_params(cls, n_ref: float = 1e4, **values: float) -> FitResult:
        law, state = cls._parametrised({"alpha_slope": 0.0, "beta_slope": 0.0, **values}, n_ref=n_ref)
        return cls.result_class(law, {**state, "n_ref_": n_ref})


class GaoResult(FitResult):
    """A fitted Gao law: a ``FitResult`` that also gives the coefficients and the peak at any RM size."""

    __slots__ = ()

    def coefficients(self, rm_params) -> tuple[np.ndarray, np.ndarray]:
        """alpha(N), beta(N) of the joint law at RM sizes N."""
        x = self.law._x(np.atleast_1d(np.asarray(rm_params, float)), self._state["n_ref_"])
        p = self._state["params_"]
        return p["alpha"] + p["alpha_slope"] * x, p["beta"] + p["beta_slope"] * x

    def peak(self, rm_params) -> dict[str, Any]:
        """Where the gold curve of an RM of this size peaks: d*, gold there and KL = d*^2, with intervals."""
        law = self.law
        a, b = self.coefficients(rm_params)
        pk = [law._peak_summary(float(x), float(y)) for x, y in zip(a, b)]
        out: dict[str, Any] = {"rm_params": np.atleast_1d(np.asarray(rm_params, float)).tolist(),
                               **{k: [p[k] for p in pk] for k in ("d_star", "gold_star", "kl_star")}}
        B = self._state.get("bootstrap_theta_")
        if B is not None and len(B):
            x = law._x(np.atleast_1d(np.asarray(rm_params, float)), self._state["n_ref_"])
            per_size = [law._peak_intervals(B[:, 0] + B[:, 1] * xi, B[:, 2] + B[:, 3] * xi) for xi in x]
            out.update({f"{k}_ci": [iv[k] for iv in per_size] for k in ("d_star", "gold_star", "kl_star")})
        return out


def estimate_gao(law: GaoLaw, data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> dict:
    """Exact least squares (the law is linear in its coefficients) on all RM sizes at once, per-size fits
    beside it; the bootstrap resamples prompts (with a ``prompt`` column) or residuals within each RM size."""
    if drop_highest_loss or dropna:
        raise SettingsError(f"{law.name} takes neither drop_highest_loss nor dropna (a reward curve has no "
                            "'highest loss'; rows with missing values are named as an error)")
    df = law._table(data, columns)
    df = df[df["d"] > 0]  # R(0) = 0 by construction: those rows carry no information
    if law.max_d is not None:
        df = df[df["d"] <= law.max_d]
        if df.empty:
            raise DataError(f"{law.name}: no point with 0 < d <= max_d = {law.max_d:g} (sqrt of KL); raise --max-d")
    sizes = np.sort(df["rm_params"].unique())
    free = law._free(len(sizes))
    if len(sizes) < 2:
        warnings.warn(f"{law.name}: one reward-model size ({int(sizes[0]):,} parameters) in the data, so "
                      "alpha_slope and beta_slope (how the law changes with RM size) cannot be estimated: they "
                      "are held at 0 and reported as not estimated (add RM sizes to fit them)",
                      ScalingWarning, stacklevel=2)
    if len(df) <= free.sum():
        raise DataError(f"{len(df)} point(s) with d > 0 for {int(free.sum())} free parameter(s): {law.name} "
                        "needs more runs (more n values, checkpoints or RM sizes)")
    if df["d"].nunique() < 2:
        raise DataError(f"{law.name}: all points share one value of d; the law needs several KL budgets")
    n_ref = float(np.exp(np.log(sizes).mean())) if law.n_ref is None else float(law.n_ref)
    d, N, y = df["d"].to_numpy(), df["rm_params"].to_numpy(), df[law.score].to_numpy()
    A = law._design(d, law._x(N, n_ref))
    theta = law._solve(A, y, np.ones((1, len(y))), free)[0]
    st = params_state(law, theta)
    resid = y - A @ theta
    st.update(n_ref_=n_ref, residuals_=resid, objective_=float(np.mean(resid ** 2)), n_points_=int(len(y)),
              converged_=True,
              data_range_={"d": [float(d.min()), float(d.max())], "rm_params": [float(sizes[0]), float(sizes[-1])]})
    st["fit_info_"] = {"free": [n for n, f in zip(law.param_names(), free) if f], "loss": "squared",
                       "procedure": "exact least squares (the law is linear in its coefficients)",
                       "n_ref": n_ref, "rm_sizes": [int(s) for s in sizes],
                       "bootstrap_over": "prompts" if "prompt" in df.columns else "residuals within RM size",
                       "unit": "points", "max_d": law.max_d}
    st["bootstrap_theta_"] = None
    resamples = None
    if law.bootstrap:
        B, n = int(law.bootstrap), len(y)
        if "prompt" in df.columns:  # prompts resampled as weights
            boot = bootstrap(law.name, B, law.seed, lambda w: law._solve(A, y, w[None, :], free)[0],
                             groups=pd.factorize(df["prompt"])[0])
            resamples = (boot.draws, np.tile(y, (B, 1)))
        else:  # residuals resampled into targets
            ones = np.ones((1, n))
            boot = bootstrap(law.name, B, law.seed, lambda yb: law._solve(A, yb, ones, free)[0],
                             sampler=lambda rng, B: _residual_targets(law, df, resid, A @ theta, rng, B))
            resamples = (np.ones((B, n)), boot.draws)
        st["bootstrap_theta_"] = boot.theta
    uncertainty(law, st)
    st["per_size_"] = law._per_size(df, resamples)
    return st


def _residual_targets(law: GaoLaw, df: pd.DataFrame, resid: np.ndarray, fitted: np.ndarray, rng, B: int) -> np.ndarray:
    """(B, n) targets: the fit plus residuals resampled within each reward-model size."""
    y = df[law.score].to_numpy()
    Y = np.empty((B, len(y)))
    # least-squares residuals are smaller than the errors by sqrt((n - p) / n): undo that
    inflate = math.sqrt(len(y) / max(1, len(y) - int(law._free(df["rm_params"].nunique()).sum())))
    for size in np.unique(df["rm_params"]):
        m = (df["rm_params"] == size).to_numpy()
        r = (resid[m] - resid[m].mean()) * inflate
        Y[:, m] = fitted[m] + rng.choice(r, size=(B, m.sum()), replace=True)
    return Y


GaoLaw.estimator = staticmethod(estimate_gao)
GaoLaw.result_class = GaoResult


#: a prediction at a sqrt(KL) this many times the largest measured is warned of: the turn of gold is not in the data
D_BEYOND = 1.5


@register_law
class GaoBoN(GaoLaw):
    name = "gao-bon"
    method = "bon"
    formula = "gold = d (alpha(N) - beta(N) d),  d = sqrt(KL)"

    @staticmethod
    def _curvature(d):
        return np.asarray(d, float) ** 2

    @staticmethod
    def _peak(alpha, beta):
        return alpha / (2 * beta) if beta > 0 and alpha > 0 else None


@register_law
class GaoRL(GaoLaw):
    name = "gao-rl"
    method = "rl"
    formula = "gold = d (alpha(N) - beta(N) log d),  d = sqrt(KL)"

    @staticmethod
    def _curvature(d):
        return _xlogx(d)

    @staticmethod
    def _peak(alpha, beta):
        if beta <= 0:
            return None
        z = alpha / beta - 1
        return math.exp(z) if z < 300 else None


def backtest_largest(law_cls, data, **settings) -> dict[str, Any]:
    """Fit on every RM size but the largest; predict the largest's gold curve and peak."""
    law = law_cls(**settings)
    df = law._table(data)
    sizes = np.sort(df["rm_params"].unique())
    if len(sizes) < 3:
        raise DataError(f"backtesting the size scaling needs at least 3 RM sizes (2 to fit a slope), got {len(sizes)}")
    train, test = df[df["rm_params"] < sizes[-1]], df[(df["rm_params"] == sizes[-1]) & (df["d"] > 0)]
    law = law.fit(train)
    with warnings.catch_warnings():  # the held-out size alone, for its observed peak: one size by design
        warnings.filterwarnings("ignore", message=".*one reward-model size")
        full = law_cls(**settings).fit(test)
    points = test.groupby("d", as_index=False)[law.score].mean()  # per-prompt rows: compare with the mean
    pred = law.predict(d=points["d"].to_numpy(), rm_params=np.full(len(points), sizes[-1]))
    err = pred - points[law.score].to_numpy()
    pk_pred, pk_true = law.peak(sizes[-1]), full.per_size_[0]
    return {"rm_params": int(sizes[-1]), "trained_on": [int(s) for s in sizes[:-1]], "n_test": int(len(points)),
            "mae": float(np.abs(err).mean()), "max_abs_error": float(np.abs(err).max()),
            "predicted_peak": {k: pk_pred[k][0] for k in ("d_star", "gold_star", "kl_star")},
            "predicted_peak_ci": {k: pk_pred.get(f"{k}_ci", [None])[0] for k in ("d_star", "gold_star", "kl_star")},
            "fitted_peak": {k: pk_true.get(k) for k in ("d_star", "gold_star", "kl_star")},
            "fitted_peak_in_data": bool(pk_true.get("peak_in_data", True)), "d_max": float(test["d"].max()),
            "law": law}
