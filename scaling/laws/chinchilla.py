"""Chinchilla's parametric law (Hoffmann et al. 2022, Approach 3).

L(N, D) = E + A / N^alpha + B / D^beta, fitted as in the paper and in the
replication by Besiroglu et al. 2024: Huber loss (delta = 1e-3) on
log L_hat - log L with log L_hat = logsumexp(log A - alpha log N,
log B - beta log D, log E), summed over runs, from the published grid of 4,500
starting points, keeping the best objective.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Callable, ClassVar

import numpy as np

from ..errors import FitError, ScalingWarning, SettingsError
from ..fitting.optimize import LogSumExpDesign
from . import register_law
from .base import Law, Param
from .result import FitResult

#: the initialisation grid of Hoffmann et al. 2022 / Besiroglu et al. 2024 (4,500 starts)
GRID = {
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.1, 5.0),
    "b": np.arange(0.0, 25.1, 5.0),
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
}


#: a 243-start grid for repeated fits (backtests, simulations); "full" is the published one
COARSE_GRID = {"e": np.array([-1.0, 0.0, 1.0]), "a": np.array([0.0, 10.0, 20.0]), "b": np.array([0.0, 10.0, 20.0]),
               "alpha": np.array([0.25, 0.5, 1.0]), "beta": np.array([0.25, 0.5, 1.0])}


@register_law
class ChinchillaLaw(LogSumExpDesign, Law):
    """L(N, D) = E + A / N^alpha + B / D^beta.

    Parameters
    ----------
    loss : {"huber", "squared"}
        Robust loss on log residuals (Huber with ``delta``, as published).
    tie_exponents : bool
        Fit a single exponent, alpha = beta.
    fixed, bounds, tie, params
        Fixed values, ``(min, max)`` bounds, ties, or an ``lmfit.Parameters``
        carrying all three (``vary=False``, ``min``/``max``, ``expr='alpha'``).
    bootstrap : int
        Resamples over runs for standard errors and intervals (0: none).
    starts : {"full", "coarse"}
        The published 4,500-start grid, or 243 starts for many repeated fits.

    Examples
    --------
    >>> law = ChinchillaLaw(bootstrap=1000).fit(load_chinchilla(drop_highest_loss=5))
    >>> law.compute_optimal(1e24)["N_opt"]
    """

    name = "chinchilla"
    inputs = ("N", "D")
    parameters = (
        Param("E", log=True, description="irreducible loss"),
        Param("A", log=True, description="parameter term scale"),
        Param("B", log=True, description="data term scale"),
        Param("alpha", lower=0.0, description="parameter exponent"),
        Param("beta", lower=0.0, description="data exponent"),
    )
    formula: ClassVar[str] = "L(N, D) = E + A/N^alpha + B/D^beta"

    def __init__(self, *, tie_exponents: bool = False, starts: str = "full", **kwargs):
        self.tie_exponents = bool(tie_exponents)
        self.starts = starts
        super().__init__(**kwargs)
        if starts not in ("full", "coarse"):
            raise SettingsError(f"starts must be 'full' (the published 4,500) or 'coarse' (243), got {starts!r}")

    def _extra_ties(self):
        return [("alpha", "beta")] if self.tie_exponents else []

    def _settings_extra(self):
        return {"tie_exponents": self.tie_exponents, "starts": self.starts}

    def _restore_extra(self, d):
        s = d.get("settings") or {}
        self.tie_exponents = bool(s.get("tie_exponents", False))
        self.starts = s.get("starts", "full")
        return {}

    # ---------------------------------------------------------------- model
    @staticmethod
    def _design(X) -> np.ndarray:
        lN, lD = np.log(X["N"]), np.log(X["D"])
        d = np.zeros((lN.size, 3, 5))
        d[:, 0, 0] = 1.0  # log E
        d[:, 1, 1], d[:, 1, 3] = 1.0, -lN  # log A - alpha log N
        d[:, 2, 2], d[:, 2, 4] = 1.0, -lD  # log B - beta log D
        return d

    def _init_grid(self, X, log_y):
        if self.starts not in ("full", "coarse"):
            raise SettingsError(f"starts must be 'full' (the published 4,500) or 'coarse' (243), got {self.starts!r}")
        g = GRID if self.starts == "full" else COARSE_GRID
        return np.array(list(itertools.product(g["e"], g["a"], g["b"], g["alpha"], g["beta"])), float)

    def _check_terms(self, p, X, y):
        for term, inp, what in ((p["A"] / X["N"] ** p["alpha"], "N", "parameters"),
                                (p["B"] / X["D"] ** p["beta"], "D", "tokens")):
            share = float(np.max(term / y))
            if share < 1e-3 and inp not in self.fixed:
                warnings.warn(
                    f"{self.name}: the fitted {inp} term is below 0.1% of the loss at every run: these data show no "
                    f"fall of loss with {inp} ({what}), so the exponents and the compute-optimal allocation mean "
                    f"nothing here (check that {inp} is the {what} column, e.g. --columns {inp}=<column>)",
                    ScalingWarning, stacklevel=4)

    @classmethod
    def references(cls):
        return [cls.hoffmann2022()]

    # ------------------------------------------------------------ published
    @classmethod
    def hoffmann2022(cls, rounded: bool = True) -> FitResult:
        """Hoffmann et al. 2022 (eq. 10): E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28.

        ``rounded=False`` gives the unrounded exponents alpha 0.3392, beta 0.2849
        (as reported by Besiroglu et al. 2024).
        """
        a, b = (0.34, 0.28) if rounded else (0.3392, 0.2849)
        return cls.from_params(E=1.69, A=406.4, B=410.7, alpha=a, beta=b).labelled(
            "Hoffmann et al. 2022" + ("" if rounded else " (unrounded)"))

    @classmethod
    def besiroglu2024(cls) -> FitResult:
        """Besiroglu et al. 2024's refit of the Figure 4 data (their likelihood estimate)."""
        return cls.from_params(E=1.8169, A=482.01, B=2085.43, alpha=0.3478, beta=0.3659).labelled(
            "Besiroglu et al. 2024")

    # ------------------------------------------------------------ allocation
    @staticmethod
    def _allocation(E, A, B, alpha, beta, C, k, strict=True):
        """Closed-form optimum; ``strict=False`` (bootstrap samples) lets an exponent at 0 give its limit."""
        alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)  # never Python's complex powers
        if strict and (np.any(alpha <= 0) or np.any(beta <= 0)):
            raise FitError(
                f"no compute-optimal allocation: it needs both exponents positive, but alpha = "
                f"{float(np.min(alpha)):.4g}, beta = {float(np.min(beta)):.4g} (loss does not fall with "
                f"{'N' if np.any(alpha <= 0) else 'D'} in this fit; check the data and the column mapping)")
        a = beta / (alpha + beta)
        b = alpha / (alpha + beta)
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        N = G * (C / k) ** a
        D = (C / k) ** b / G
        L = E + A / N**alpha + B / D**beta
        return a, b, G, N, D, L

    allocation_options = ("flops",)

    def _allocate(self, theta, C, strict, flops: float | Callable | None = None):
        """Closed form for 6ND (``flops=None``) or kND (a number k); a function ``flops(N, D)`` is
        solved numerically for each parameter vector (for an interval, at most ``NUMERIC_RESAMPLES`` of the
        bootstrap's, evenly spread)."""
        if callable(flops) and theta.shape[0] > NUMERIC_RESAMPLES:
            theta = theta[np.unique(np.linspace(0, theta.shape[0] - 1, NUMERIC_RESAMPLES).round().astype(int))]
        P = self._to_public(theta)
        k = 6.0 if flops is None or callable(flops) else float(flops)
        _, _, _, N, D, L = self._allocation(*(P[:, i:i + 1] for i in range(5)), C[None, :], k, strict=strict)
        if callable(flops):
            rows = []
            for r in range(theta.shape[0]):
                def predict(n, d, r=r):
                    return np.exp(self._log_predict(theta[r:r + 1], {"N": np.atleast_1d(n).astype(float),
                                                                     "D": np.atleast_1d(d).astype(float)})[0])

                try:
                    n_opt, d_opt = _numeric_optimum(predict, flops, C, N[r])
                except (ValueError, RuntimeError):  # a resample whose optimum the solver cannot bracket
                    if strict:
                        raise
                    n_opt = d_opt = np.full(C.size, np.nan)
                rows.append((n_opt, d_opt, predict(n_opt, d_opt) if np.isfinite(n_opt).all() else n_opt))
            N, D, L = (np.array([row[i] for row in rows]) for i in range(3))
        return {"N_opt": N, "D_opt": D, "loss": L}

    def _allocation_exponents(self, theta):
        P = self._to_public(theta)
        a, b, G = self._allocation(*(P[:, i] for i in range(5)), 1.0, 6.0, strict=False)[:3]
        return {"a": a, "b": b, "G": G}

    def _summary_extra(self, fit):
        p = fit._state["params_"]
        if p["alpha"] <= 0 or p["beta"] <= 0:
            return {"compute_optimal": {"a": None, "b": None, "G": None,
                                        "note": "undefined: an exponent is not positive"}}
        d = {k: float(v[0]) for k, v in self._allocation_exponents(fit._state["theta_"][None, :]).items()}
        ci = fit.allocation_exponent_intervals()
        if ci:
            d["ci"] = ci
        loose = fit.allocation_not_identified()
        if loose:
            d["note"] = (f"not identified: {' and '.join(loose)} {'is' if len(loose) == 1 else 'are'} not (see the "
                         "parameters), so neither are a and b; no interval")
        return {"compute_optimal": d}

    def _report_extra(self, fit):
        co = self._summary_extra(fit)["compute_optimal"]
        if co["a"] is None:
            p = fit._state["params_"]
            return [f"\ncompute-optimal allocation: {co['note']} (alpha = {p['alpha']:.4g}, "
                    f"beta = {p['beta']:.4g})"]
        pct = int(round(100 * self.level))
        line = f"\ncompute-optimal: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with a = {co['a']:.4f}, b = {co['b']:.4f}, G = {co['G']:.4g}"
        if "ci" in co:
            line += f"\n  {pct}% CI: a in [{co['ci']['a'][0]:.3f}, {co['ci']['a'][1]:.3f}], b in [{co['ci']['b'][0]:.3f}, {co['ci']['b'][1]:.3f}]"
        if co.get("note"):
            line += f"\n  {co['note']}"
        return [line]


#: bootstrap resamples whose allocation is solved numerically for a FLOP model given as a function
NUMERIC_RESAMPLES = 200


def _numeric_optimum(predict: Callable, flops: Callable, C: np.ndarray, N_guess: np.ndarray):
    """Minimise predict(N, D(N)) over log N where flops(N, D(N)) = C, for each C."""
    from scipy.optimize import brentq, minimize_scalar

    Ns, Ds = [], []
    for c, n0 in zip(C, N_guess):
        def d_of(logn, c=c):
            n = np.exp(logn)
            f = lambda logd: float(flops(n, np.exp(logd))) - c  # noqa: E731
            return np.exp(brentq(f, -50, 120))

        res = minimize_scalar(lambda logn: float(predict(np.exp(logn), d_of(logn))[0]),
                              bracket=(np.log(n0) - 1, np.log(n0) + 1))
        Ns.append(np.exp(res.x))
        Ds.append(d_of(res.x))
    return np.array(Ns), np.array(Ds)
