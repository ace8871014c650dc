"""Kaplan et al. 2020, "Scaling Laws for Neural Language Models".

L(N) = (N_c/N)^alpha_N, L(D) = (D_c/D)^alpha_D, L(C_min) = (C_c/C_min)^alpha_C,
L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D,
L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S, B_crit(L) = B*/L^(1/alpha_B),
and the compute-efficient frontier N_opt = N_e C_min^p_N.
N counts non-embedding parameters. Constants below are the paper's (Tables 2,
3, 5 and 6); compute is in PF-days there and in FLOPs here.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np

from ..counting import PF_DAY
from ..errors import UnsupportedError
from ..fitting.optimize import FunctionModel
from . import register_law
from .base import Law, Param

KAPLAN2020 = {
    # Table 5: single-variable power laws
    "alpha_N": 0.076, "N_c": 8.8e13,
    "alpha_D": 0.095, "D_c": 5.4e13,
    "alpha_C": 0.057, "C_c": 1.6e7 * PF_DAY,
    "alpha_C_min": 0.050, "C_c_min": 3.1e8 * PF_DAY,
    "alpha_B": 0.21, "B_star": 2.1e8,
    "alpha_S": 0.76, "S_c": 2.1e3,
    # Table 2 / eq. (1.5): the joint L(N, D) fit
    "N_D": {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13},
    # Table 3 / eq. (1.6): the joint L(N, S_min) fit
    "N_S": {"alpha_N": 0.077, "alpha_S": 0.76, "N_c": 6.5e13, "S_c": 2.1e3},
    # Table 6: the compute-efficient frontier, X_opt = X_e * (C_min / PF-day)^p_X
    "frontier": {"p_N": 0.73, "N_e": 1.3e9, "p_B": 0.24, "B_e": 2.0e6, "p_S": 0.03, "S_e": 5.4e3,
                 "p_D": 0.27, "D_e": 2e10},
}


def critical_batch_size(loss, B_star: float = KAPLAN2020["B_star"], alpha_B: float = KAPLAN2020["alpha_B"]):
    """Kaplan's critical batch size in tokens, B_crit(L) = B* / L^(1/alpha_B)."""
    loss = np.asarray(loss, float)
    return B_star / loss ** (1.0 / alpha_B)


def kaplan_frontier(C, frontier: dict | None = None) -> dict:
    """Kaplan's compute-efficient allocation for compute ``C`` in FLOPs (Table 6)."""
    f = frontier or KAPLAN2020["frontier"]
    c = np.asarray(C, float) / PF_DAY
    return {"N_opt": f["N_e"] * c ** f["p_N"], "D_opt": f["D_e"] * c ** f["p_D"],
            "B": f["B_e"] * c ** f["p_B"], "S_min": f["S_e"] * c ** f["p_S"]}


class _FunctionLaw(Law):
    """A law whose log prediction and Jacobian are written out by hand."""

    def _jacobian(self, theta, X):
        raise NotImplementedError

    def _model(self, X):
        return FunctionModel(self._log_predict, self._jacobian, X, len(self.parameters))


class _SinglePowerLaw(_FunctionLaw):
    """L(x) = (x_c / x)^alpha, internal (log x_c, alpha)."""

    def _log_predict(self, theta, X):
        lx = np.log(X[self.inputs[0]])
        return theta[:, 1:2] * (theta[:, 0:1] - lx[None, :])

    def _jacobian(self, theta, X):
        lx = np.log(X[self.inputs[0]])
        J = np.empty((theta.shape[0], lx.size, 2))
        J[..., 0] = theta[:, 1:2]
        J[..., 1] = theta[:, 0:1] - lx[None, :]
        return J

    def _init_grid(self, X, log_y):
        lx = np.log(X[self.inputs[0]])
        slope, icpt = np.polyfit(lx, log_y, 1)
        starts = [(lc, a) for lc in (10.0, 20.0, 30.0, 45.0) for a in (0.02, 0.1, 0.5)]
        if slope < 0:
            starts.append((icpt / -slope, -slope))
        return np.array(starts, float)


_KAPLAN = "Kaplan et al. 2020"


@register_law
class KaplanParams(_SinglePowerLaw):
    """L(N) = (N_c / N)^alpha_N: models trained to convergence, N non-embedding parameters."""

    name = "kaplan-n"
    inputs = ("N",)
    parameters = (Param("N_c", log=True), Param("alpha_N", lower=0.0))
    formula: ClassVar[str] = "L(N) = (N_c/N)^alpha_N"

    @classmethod
    def kaplan2020(cls):
        return cls.from_params(N_c=KAPLAN2020["N_c"], alpha_N=KAPLAN2020["alpha_N"]).labelled(_KAPLAN)


@register_law
class KaplanData(_SinglePowerLaw):
    """L(D) = (D_c / D)^alpha_D: large models with early stopping."""

    name = "kaplan-d"
    inputs = ("D",)
    parameters = (Param("D_c", log=True), Param("alpha_D", lower=0.0))
    formula: ClassVar[str] = "L(D) = (D_c/D)^alpha_D"

    @classmethod
    def kaplan2020(cls):
        return cls.from_params(D_c=KAPLAN2020["D_c"], alpha_D=KAPLAN2020["alpha_D"]).labelled(_KAPLAN)


@register_law
class KaplanCompute(_SinglePowerLaw):
    """L(C_min) = (C_c / C_min)^alpha_C, compute in FLOPs."""

    name = "kaplan-c"
    inputs = ("C",)
    parameters = (Param("C_c", log=True), Param("alpha_C", lower=0.0))
    formula: ClassVar[str] = "L(C) = (C_c/C)^alpha_C"

    @classmethod
    def kaplan2020(cls, minimal: bool = True):
        """``minimal=True``: the C_min law (alpha 0.050); else the fixed-batch C law (alpha 0.057)."""
        if minimal:
            return cls.from_params(C_c=KAPLAN2020["C_c_min"], alpha_C=KAPLAN2020["alpha_C_min"]).labelled(_KAPLAN)
        return cls.from_params(C_c=KAPLAN2020["C_c"], alpha_C=KAPLAN2020["alpha_C"]).labelled(_KAPLAN)


@register_law
class KaplanLaw(_FunctionLaw):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq. 1.5)."""

    name = "kaplan"
    inputs = ("N", "D")
    parameters = (Param("N_c", log=True), Param("D_c", log=True), Param("alpha_N", lower=0.0), Param("alpha_D", lower=0.0))
    formula: ClassVar[str] = "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"

    @staticmethod
    def _parts(theta, X):
        lNc, lDc, aN, aD = (theta[:, i:i + 1] for i in range(4))
        u = (aN / aD) * (lNc - np.log(X["N"])[None, :])
        v = lDc - np.log(X["D"])[None, :]
        m = np.maximum(u, v)
        S = m + np.log(np.exp(u - m) + np.exp(v - m))
        wu = np.exp(u - S)
        return lNc, lDc, aN, aD, u, S, wu

    def _log_predict(self, theta, X):
        *_, aD, u, S, wu = self._parts(theta, X)
        return aD * S

    def _jacobian(self, theta, X):
        lNc, lDc, aN, aD, u, S, wu = self._parts(theta, X)
        J = np.empty(S.shape + (4,))
        J[..., 0] = aN * wu
        J[..., 1] = aD * (1.0 - wu)
        J[..., 2] = wu * (lNc - np.log(X["N"])[None, :])
        J[..., 3] = S - wu * u
        return J

    def _init_grid(self, X, log_y):
        vals = itertools.product((10.0, 20.0, 30.0, 40.0), (10.0, 20.0, 30.0, 40.0),
                                 (0.03, 0.1, 0.3, 1.0), (0.03, 0.1, 0.3, 1.0))
        return np.array(list(vals), float)

    @classmethod
    def kaplan2020(cls):
        p = KAPLAN2020["N_D"]
        return cls.from_params(N_c=p["N_c"], D_c=p["D_c"], alpha_N=p["alpha_N"], alpha_D=p["alpha_D"]).labelled(_KAPLAN)

    allocation_options = ("flops",)

    def _allocate(self, theta, C, strict, flops=None):
        """Minimise L(N, C/(kN)) over N (closed form): N_opt ∝ C^(alpha_D/(alpha_N+alpha_D)).

        This is the optimum *of the fitted L(N, D)*; Kaplan's own frontier (N_opt ∝
        C^0.73, from early-stopped training curves) is :func:`kaplan_frontier`.
        """
        if callable(flops):
            raise UnsupportedError("KaplanLaw.compute_optimal takes a FLOP factor k (C = k N D), not a function")
        k = 6.0 if flops is None else float(flops)
        P = self._to_public(theta)
        Nc, Dc, aN, aD = (P[:, i:i + 1] for i in range(4))
        r = aN / aD
        # d/dN [(Nc/N)^r + k N Dc / C] = 0
        N = (r * Nc ** r * C[None, :] / (k * Dc)) ** (1.0 / (1.0 + r))
        D = C[None, :] / (k * N)
        return {"N_opt": N, "D_opt": D, "loss": ((Nc / N) ** r + Dc / D) ** aD}

    def _allocation_exponents(self, theta):
        P = self._to_public(theta)
        a = 1.0 / (1.0 + P[:, 2] / P[:, 3])
        return {"a": a, "b": 1.0 - a}


@register_law
class KaplanSteps(_FunctionLaw):
    """L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq. 1.6)."""

    name = "kaplan-ns"
    inputs = ("N", "S")
    parameters = (Param("N_c", log=True), Param("S_c", log=True), Param("alpha_N", lower=0.0), Param("alpha_S", lower=0.0))
    formula: ClassVar[str] = "L(N, S) = (N_c/N)^alpha_N + (S_c/S)^alpha_S"

    def _parts(self, theta, X):
        lNc, lSc, aN, aS = (theta[:, i:i + 1] for i in range(4))
        dn = lNc - np.log(X["N"])[None, :]
        ds = lSc - np.log(X["S"])[None, :]
        u, v = aN * dn, aS * ds
        m = np.maximum(u, v)
        S = m + np.log(np.exp(u - m) + np.exp(v - m))
        return aN, aS, dn, ds, S, np.exp(u - S)

    def _log_predict(self, theta, X):
        return self._parts(theta, X)[4]

    def _jacobian(self, theta, X):
        aN, aS, dn, ds, S, wu = self._parts(theta, X)
        J = np.empty(S.shape + (4,))
        J[..., 0] = wu * aN
        J[..., 1] = (1 - wu) * aS
        J[..., 2] = wu * dn
        J[..., 3] = (1 - wu) * ds
        return J

    def _init_grid(self, X, log_y):
        vals = itertools.product((10.0, 20.0, 30.0, 40.0), (2.0, 5.0, 8.0, 12.0),
                                 (0.03, 0.1, 0.3, 1.0), (0.1, 0.3, 0.8, 1.5))
        return np.array(list(vals), float)

    @classmethod
    def kaplan2020(cls):
        p = KAPLAN2020["N_S"]
        return cls.from_params(N_c=p["N_c"], S_c=p["S_c"], alpha_N=p["alpha_N"], alpha_S=p["alpha_S"]).labelled(_KAPLAN)
