"""RLHF scaling with samples per prompt (Hou et al. 2024, "Does RLHF Scale?").

Drawing more responses per prompt (the k of RLOO or GRPO) improves the policy at first and
then plateaus. The law here is the saturating power law

    R(k) = R_inf - c k^-gamma

for the gold reward R after a fixed RL budget: R_inf is the plateau, c the gain from k = 1 to
the plateau (R(1) = R_inf - c) and gamma how fast it is reached. ``k_at(0.9)`` (``k90``) is the
k where 90% of that gain is reached, k = (1 - 0.9)^(-1/gamma) = 10^(1/gamma).

The reward is on its own scale (it can be negative), so the fit is least squares on R, not
on logs: R_inf and c are linear given gamma, so gamma is profiled over a fine log grid
(refined twice) and the two linear parameters solved exactly at each value; the bootstrap
resamples runs and redoes the same (all resamples at once).

Data: one row per run with ``samples_per_prompt`` and ``gold``. The other RLHF axes
(``policy``, ``rm_params``, ``rm_data``, ``kl_penalty``, ``method``) must be constant in the
rows fitted: one curve at a time.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..data import near_codes, parse_columns, read_table, require_rows
from ..diagnostics import check_extrapolation
from ..errors import DataError, SettingsError, ScalingWarning
from ..fitting.bootstrap import bootstrap
from . import register_law
from .base import Law, Param
from .result import FitResult, additive_band, params_state, uncertainty

#: axes of an RLHF sweep that must be constant within one samples-per-prompt curve
HELD = ("method", "policy", "policy_params", "rm_params", "rm_data", "kl_penalty")
#: the profile grid of gamma: log-spaced, refined twice around the best point
GAMMA_RANGE, GAMMA_POINTS, REFINE_POINTS = (1e-3, 20.0), 400, 41


class SamplesResult(FitResult):
    """A fitted samples-per-prompt law: also gives the k where a fraction of the gain is reached."""

    __slots__ = ()

    def k_at(self, fraction: float = 0.9, level: float | None = None) -> dict[str, Any]:
        """k where ``fraction`` of the gain from k = 1 to the plateau is reached, with a bootstrap interval."""
        if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
            raise SettingsError(f"fraction must be in (0, 1), got {fraction!r}")
        gamma = self._state["params_"]["gamma"]
        out: dict[str, Any] = {"fraction": float(fraction), "k": _k_at(gamma, fraction), "ci": None}
        B = self._state.get("bootstrap_theta_")
        if B is not None and len(B) > 1:
            ks = np.array([_k_at(g, fraction) or np.inf for g in B[:, 2]])
            q = np.quantile(ks, [(1 - (level or self.level)) / 2, (1 + (level or self.level)) / 2],
                            method="inverted_cdf")
            out["ci"] = [float(v) if np.isfinite(v) else None for v in q]
        return out


def _k_at(gamma: float, fraction: float) -> float | None:
    if gamma <= 0:
        return None
    log_v = -np.log1p(-fraction) / gamma  # in logs: a gamma near 0 puts k beyond any float, not an OverflowError
    return float(np.exp(log_v)) if log_v < 700 else None


@register_law
class SamplesPerPromptLaw(Law):
    """R(k) = R_inf - c k^-gamma: gold reward against the samples drawn per prompt.

    Parameters
    ----------
    fixed : dict
        Parameters held at given values (``{"gamma": 0.5}``).
    bootstrap, level, seed
        Resamples over runs for intervals (of the parameters and of ``k90``).
    score : {"gold", "proxy"}
        The reward column fitted (default ``gold``).
    """

    name = "rlhf-samples"
    inputs: ClassVar[tuple[str, ...]] = ("samples_per_prompt",)
    target: ClassVar[str] = "gold"
    parameters = (
        Param("R_inf", description="reward plateau as k grows"),
        Param("c", description="gain from k = 1 to the plateau"),
        Param("gamma", lower=0.0, description="how fast the plateau is reached"),
    )
    formula: ClassVar[str] = "R(k) = R_inf - c k^-gamma"
    supports = frozenset({"fixed"})
    default_loss = "squared"

    def __init__(self, *, score: str = "gold", **kwargs):
        if score not in ("gold", "proxy"):
            raise SettingsError(f"score must be 'gold' or 'proxy', got {score!r}")
        self.score = score
        super().__init__(**kwargs)

    def _unsupported_reason(self) -> str:
        return ("R_inf and c are solved exactly given gamma (least squares on the reward's own scale); "
                "only fixed parameters are supported")

    def _settings_extra(self) -> dict[str, Any]:
        return {"score": self.score}

    def _restore_extra(self, d: Mapping[str, Any]) -> dict[str, Any]:
        self.score = (d.get("settings") or {}).get("score", "gold")
        return {}

    # ------------------------------------------------------------- the form
    @staticmethod
    def _value(theta: np.ndarray, k) -> np.ndarray:
        theta = np.atleast_2d(theta)
        k = np.asarray(k, float)
        return theta[:, :1] - theta[:, 1:2] * k[None, :] ** -theta[:, 2:3]

    def _predict(self, fit, X):
        check_extrapolation(self.name, X, fit._state.get("data_range_"))
        return self._value(fit._state["theta_"], X["samples_per_prompt"])[0]

    def _predict_interval(self, fit, X, level, kind):
        return additive_band(fit, self._value(fit._state["bootstrap_theta_"], X["samples_per_prompt"]), level, kind)

    def _summary_extra(self, fit) -> dict[str, Any]:
        k = fit.k_at(0.9) if isinstance(fit, SamplesResult) else {"k": None, "ci": None}
        return {"k90": k["k"], "k90_ci": k["ci"]}

    def _report_extra(self, fit) -> list[str]:
        s = self._summary_extra(fit)
        if s["k90"] is None:
            return ["\n  k90: undefined (gamma <= 0: no plateau)"]
        line = f"\n  k90 (90% of the gain from k=1 to the plateau) = {s['k90']:.3g}"
        if s["k90_ci"]:
            lo, hi = (f"{v:.3g}" if v is not None else "inf" for v in s["k90_ci"])
            line += f"  {int(round(100 * self.level))}% CI [{lo}, {hi}]"
        return [line]

    # ------------------------------------------------------------- the data
    def rows(self, data, columns=None) -> pd.DataFrame:
        """The rows fitted: numeric ``samples_per_prompt`` >= 1 and a finite score, one curve (held axes constant)."""
        df = require_rows(read_table(data))  # a file, or a copy of a DataFrame
        mapping = parse_columns(columns)
        if mapping:
            df = df.rename(columns={v: k for k, v in mapping.items()})
        missing = [c for c in ("samples_per_prompt", self.score) if c not in df.columns]
        if missing:
            raise DataError(f"{self.name}: missing column(s) {missing}; the table has {list(df.columns)} "
                            f"(map yours with --columns, e.g. --columns samples_per_prompt=<your column>)")
        if "method" in df.columns and df["method"].nunique() > 1:  # an overoptimization sweep's whole export
            raise DataError(f"{self.name}: this looks like an overoptimization sweep's export (every method and every "
                            "checkpoint); fit gold at the end of RL against samples per prompt with `scaling overopt "
                            "samples EXPORT --policy P --kl-penalty K` (scaling.overopt.axes.fit_samples), or fit "
                            "the NAME-final.csv that `scaling overopt export` writes beside it")
        for c in HELD:
            if c in df.columns:
                codes = near_codes(df[c])
                if np.unique(codes[codes >= 0]).size > 1:
                    vals = list(pd.unique(df[c].dropna()))[:6]
                    raise DataError(f"{self.name}: the rows vary {c} ({vals}); fit one curve at a time: the rows at "
                                    f"one {c} (e.g. df[df['{c}'] == {vals[0]!r}])")
        df = df.copy()
        for c in ("samples_per_prompt", self.score):
            v = pd.to_numeric(df[c], errors="coerce")
            if v.isna().any() or not np.isfinite(v).all():
                bad = df.loc[v.isna() | ~np.isfinite(v.fillna(0)), c].head(3).tolist()
                raise DataError(f"{self.name}: column {c!r} has missing, non-numeric or infinite values, e.g. {bad}")
            df[c] = v.astype(float)
        if (df["samples_per_prompt"] < 1).any():
            raise DataError(f"{self.name}: samples_per_prompt must be at least 1, got "
                            f"{df['samples_per_prompt'].min():g}")
        return df.reset_index(drop=True)


# ------------------------------------------------------------------ estimator
def _free_mask(law: SamplesPerPromptLaw) -> np.ndarray:
    return np.array([n not in law.fixed for n in law.param_names()])


def _linear(law: SamplesPerPromptLaw, z: np.ndarray, y: np.ndarray, W: np.ndarray):
    """R_inf, c and the weighted squared error, arrays (B, G), for y ~ R_inf - c z with features ``z``
    (G, n) shared by every row of weights W (B, n), or (B, G, n) one set per row."""
    fR, fc = "R_inf" in law.fixed, "c" in law.fixed
    if z.ndim == 2:
        Sz, Szz, Szy = W @ z.T, W @ (z * z).T, W @ (z * y).T
    else:
        Sz, Szz, Szy = (np.einsum("bn,bgn->bg", W, v) for v in (z, z * z, z * y))
    Sw = W.sum(axis=1)[:, None]
    Sy, Syy = (W @ y)[:, None], (W @ (y * y))[:, None]
    if not fR and not fc:
        det = Sw * Szz - Sz * Sz
        det = np.where(np.abs(det) > 1e-300, det, np.nan)
        R = (Szz * Sy - Sz * Szy) / det
        c = (Sz * Sy - Sw * Szy) / det
    elif fR and not fc:
        R = np.full_like(Sz, float(law.fixed["R_inf"]))
        c = (R * Sz - Szy) / np.where(Szz > 0, Szz, np.nan)
    elif fc and not fR:
        c = np.full_like(Sz, float(law.fixed["c"]))
        R = (Sy + c * Sz) / Sw
    else:
        R = np.full_like(Sz, float(law.fixed["R_inf"]))
        c = np.full_like(Sz, float(law.fixed["c"]))
    sse = Syy + R * R * Sw + c * c * Szz - 2 * R * Sy + 2 * c * Szy - 2 * R * c * Sz  # sum w (y - R + c z)^2
    return R, c, np.where(np.isfinite(sse), sse, np.inf)


def _profile(law: SamplesPerPromptLaw, k: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(B, 3) best (R_inf, c, gamma) for each row of weights W: gamma profiled on a log grid, refined twice
    around each row's best point."""
    B, logk = len(W), np.log(k)
    rows = np.arange(B)
    if "gamma" in law.fixed:
        g = float(law.fixed["gamma"])
        R, c, _ = _linear(law, np.exp(-g * logk)[None, :], y, W)
        return np.column_stack([R[:, 0], c[:, 0], np.full(B, g)])
    lo, hi = np.log(GAMMA_RANGE[0]), np.log(GAMMA_RANGE[1])
    grid = np.linspace(lo, hi, GAMMA_POINTS)
    R, c, sse = _linear(law, np.exp(-np.exp(grid)[:, None] * logk[None, :]), y, W)
    i = np.argmin(sse, axis=1)
    best, step = grid[i], grid[1] - grid[0]
    for _ in range(2):
        lg = np.clip(best[:, None] + np.linspace(-step, step, REFINE_POINTS)[None, :], lo, hi)  # (B, G)
        R, c, sse = _linear(law, np.exp(-np.exp(lg)[:, :, None] * logk[None, None, :]), y, W)
        i = np.argmin(sse, axis=1)
        best, step = lg[rows, i], 2 * step / (REFINE_POINTS - 1)
    return np.column_stack([R[rows, i], c[rows, i], np.exp(best)])


def estimate_samples(law: SamplesPerPromptLaw, data, *, columns=None, drop_highest_loss: int = 0,
                     dropna: bool = False) -> dict:
    """Profile least squares (gamma on a refined grid, R_inf and c exact), then a bootstrap over runs."""
    if drop_highest_loss or dropna:
        raise SettingsError(f"{law.name} takes neither drop_highest_loss nor dropna (a reward has no 'highest "
                            "loss'; rows with missing values are named as an error)")
    df = law.rows(data, columns)
    k, y = df["samples_per_prompt"].to_numpy(float), df[law.score].to_numpy(float)
    free = _free_mask(law)
    n_free = int(free.sum())
    if len(y) <= n_free:
        raise DataError(f"{len(y)} point(s) for {n_free} free parameter(s): {law.name} needs more runs than "
                        "parameters (add runs at more samples per prompt, or seeds)")
    n_k = np.unique(k).size
    if free[2] and n_k < 3:
        raise DataError(f"{law.name}: the runs share {n_k} value(s) of samples_per_prompt; fitting how fast the "
                        "reward saturates needs at least 3 (or fix gamma)")
    with np.errstate(all="ignore"):
        theta = _profile(law, k, y, np.ones((1, len(y))))[0]
    st = params_state(law, theta)
    resid = y - law._value(theta, k)[0]
    g = theta[2]
    at_edge = free[2] and (g <= GAMMA_RANGE[0] * 1.01 or g >= GAMMA_RANGE[1] / 1.01)
    st.update(residuals_=resid, objective_=float(np.mean(resid ** 2)), n_points_=int(len(y)), converged_=not at_edge,
              data_range_={"samples_per_prompt": [float(k.min()), float(k.max())]})
    st["fit_info_"] = {"free": [n for n, f in zip(law.param_names(), free) if f], "loss": "squared",
                       "procedure": "profile least squares: gamma on a log grid refined twice, R_inf and c exact",
                       "unit": "runs", "at_bound": ["gamma"] if at_edge else []}
    if at_edge:
        warnings.warn(f"{law.name}: gamma ended at the edge of its search range {GAMMA_RANGE} ({g:.3g}): the reward "
                      "does not saturate in the way this law assumes over these k (a step, or no plateau); "
                      "fix gamma, or add runs at more samples per prompt", ScalingWarning, stacklevel=3)
    if theta[1] <= 0:
        warnings.warn(f"{law.name}: c = {theta[1]:.3g} <= 0: the reward does not rise with samples per prompt "
                      "in these runs", ScalingWarning, stacklevel=3)
    st["bootstrap_theta_"] = None
    if law.bootstrap and n_free:
        def refit(W):
            with np.errstate(all="ignore"):
                T = _profile(law, k, y, W)
            return T, np.isfinite(T).all(axis=1), None

        codes = pd.factorize(df["run_id"])[0] if "run_id" in df.columns else None
        st["bootstrap_theta_"] = bootstrap(law.name, law.bootstrap, law.seed, refit, n=len(y), groups=codes,
                                           batched=True).theta
    uncertainty(law, st)
    return st


SamplesPerPromptLaw.estimator = staticmethod(estimate_samples)
SamplesPerPromptLaw.result_class = SamplesResult


# ---------------------------------------------------------------------- backtest
def backtest_samples(data, *, fit_max_k: float = 8, test_min_k: float = 16, level: float = 0.9,
                     columns=None, **settings) -> dict[str, Any]:
    """Fit on runs with k <= ``fit_max_k`` and predict those with k >= ``test_min_k``: the error against each
    held-out k's mean reward and how often the ``level`` prediction interval holds a held-out run."""
    law = SamplesPerPromptLaw(level=level, **settings)
    df = law.rows(data, columns)
    train, test = df[df["samples_per_prompt"] <= fit_max_k], df[df["samples_per_prompt"] >= test_min_k]
    if test.empty:
        raise DataError(f"no runs with samples_per_prompt >= {test_min_k:g} to predict; the largest is "
                        f"{df['samples_per_prompt'].max():g}")
    result = law.fit(train)
    k, y = test["samples_per_prompt"].to_numpy(float), test[law.score].to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # predicting beyond the fitted k is the point
        pred = result.predict(samples_per_prompt=k)
        lo, hi = (result.predict_interval(samples_per_prompt=k, level=level) if result._boot is not None
                  else (pred * np.nan, pred * np.nan))
    table = (pd.DataFrame({"samples_per_prompt": k, law.score: y, "pred": pred, "lo": lo, "hi": hi})
             .groupby("samples_per_prompt", as_index=False)
             .agg(observed=(law.score, "mean"), pred=("pred", "first"), lo=("lo", "first"), hi=("hi", "first"),
                  runs=(law.score, "size")))
    err = table["pred"] - table["observed"]
    return {"fit_max_k": float(fit_max_k), "test_min_k": float(test_min_k), "n_test_runs": int(len(test)),
            "mean_abs_error": float(np.abs(err).mean()), "max_abs_error": float(np.abs(err).max()),
            "coverage": float(np.mean((y >= lo) & (y <= hi))), "level": level,
            "table": table.assign(error=err), "law": result}


def samples_truth_runs(truth: Mapping[str, float], *, ks=(1, 2, 4, 8, 16, 32, 64), seeds: int = 4,
                       noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Runs from known parameters (normal noise on the reward), for tests, notebooks and backtests."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame([{"samples_per_prompt": float(k), "seed": s} for s in range(seeds) for k in ks])
    df["gold"] = truth["R_inf"] - truth["c"] * df["samples_per_prompt"] ** -truth["gamma"] \
        + noise * rng.standard_normal(len(df))
    return df


__all__ = ["SamplesPerPromptLaw", "SamplesResult", "backtest_samples", "samples_truth_runs"]
