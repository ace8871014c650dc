"""Batched robust regression in log space.

Every final-loss law in this package is fitted the same way: minimise

    sum_i  w_i * rho( log_pred(theta; x_i) - log y_i )

with ``rho`` the Huber loss (Hoffmann et al. 2022) or the squared error, from many
starting points at once. The starting points (and, for the bootstrap, the resampled
datasets, expressed as integer row weights) are stacked on a leading batch axis so
that one Newton step for all of them is a handful of array operations.

The optimiser is a damped Newton method (Levenberg-Marquardt damping, a step is
kept only if it lowers the objective) with the exact Hessian: for log-sum-exp
models the Hessian is analytic, for other models its second-order part comes from
central differences of the analytic Jacobian. With Huber's small delta most
residuals sit on the linear branch where rho'' = 0, so the second-order part of
the Hessian is what makes the method converge quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..errors import SettingsError

__all__ = [
    "LogSumExpModel",
    "FunctionModel",
    "RobustObjective",
    "ParamTransform",
    "BatchResult",
    "newton_lm",
    "robust_loss",
]


def robust_loss(r: np.ndarray, loss: str, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return rho(r), rho'(r), rho''(r) for ``loss`` in {"huber", "squared"}."""
    if loss == "huber":
        a = np.abs(r)
        inside = a <= delta
        rho = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
        d1 = np.clip(r, -delta, delta)
        d2 = inside.astype(r.dtype)
        return rho, d1, d2
    if loss == "squared":
        return 0.5 * r * r, r, np.ones_like(r)
    raise SettingsError(f"unknown loss {loss!r}; use 'huber' or 'squared'")


class Model(Protocol):
    n_params: int

    def evaluate(self, theta: np.ndarray, jac: bool) -> tuple[np.ndarray, object]: ...

    def grad_hess(self, theta: np.ndarray, cache: object, c1: np.ndarray, c2: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]: ...


class LogSumExpModel:
    """log_pred = logsumexp_t( offset[i, t] + design[i, t, :] @ theta ).

    Covers every sum of power laws written in log parameters, e.g. Chinchilla's
    E + A/N^alpha + B/D^beta with theta = (log A, log B, log E, alpha, beta).
    Arrays are kept as one contiguous (K, n) slab per term (reductions over a
    short trailing axis are slow in numpy), and the gradient and Hessian are
    matrix products against precomputed per-point design products, so the
    (K, n, p) Jacobian is never formed.
    """

    def __init__(self, design: np.ndarray, offset: np.ndarray | None = None):
        design = np.asarray(design, dtype=float)
        self.n, self.n_terms, self.n_params = design.shape
        self.design = design
        T, p = self.n_terms, self.n_params
        self._design_T = np.ascontiguousarray(design.transpose(1, 0, 2)).reshape(T * self.n, p)
        off = np.zeros((self.n, T)) if offset is None else np.asarray(offset, float)
        self._offset_T = np.ascontiguousarray(off.T)  # (T, n)
        # design_t (x) design_u per point, for the pairs t <= u (symmetrised when t != u)
        self._pairs = [(t, u) for t in range(T) for u in range(t, T)]
        outer = []
        for t, u in self._pairs:
            o = np.einsum("ip,iq->ipq", design[:, t], design[:, u])
            if t != u:
                o = o + o.transpose(0, 2, 1)
            o = o.reshape(self.n, p * p)
            cols = np.flatnonzero(np.abs(o).max(axis=0) > 0)  # most designs are sparse
            outer.append((cols, np.ascontiguousarray(o[:, cols])))
        self._outer = outer

    def evaluate(self, theta, jac=True):
        K, T, n = theta.shape[0], self.n_terms, self.n
        z = (theta @ self._design_T.T).reshape(K, T, n)
        z += self._offset_T
        # Terms are logs of loss components (|z| << 700), so exp cannot overflow for
        # any sensible parameters; a start that does gets an infinite objective.
        np.exp(z, out=z)
        s = z[:, 0].copy()
        for t in range(1, T):
            s += z[:, t]
        pred = np.log(s)
        if not jac:
            return pred, None
        z /= s[:, None, :]
        return pred, z  # z now holds the softmax weights w[k, t, i]

    def grad_hess(self, theta, w, c1, c2):
        # d pred/d theta = sum_t w_t design_t ; Hessian of logsumexp = design^T (diag w - w w^T) design
        K, T, p, n = theta.shape[0], self.n_terms, self.n_params, self.n
        g = (w * c1[:, None, :]).reshape(K, T * n) @ self._design_T
        d = c2 - c1
        H = np.zeros((K, p * p))
        for (t, u), (cols, outer) in zip(self._pairs, self._outer):
            if cols.size == 0:
                continue
            c = w[:, t] * w[:, u]
            c *= d
            if t == u:
                c += c1 * w[:, t]
            H[:, cols] += c @ outer
        return g, H.reshape(K, p, p)


class FunctionModel:
    """A model given as ``log_pred(theta, X) -> (K, n)`` and ``jacobian(theta, X) -> (K, n, p)``.

    The second-order part of the Hessian comes from central differences of the
    analytic Jacobian (2p extra Jacobian evaluations per Newton step).
    """

    def __init__(self, log_pred: Callable, jacobian: Callable, X: dict, n_params: int, step: float = 1e-5):
        self._f, self._j, self.X, self.n_params, self.step = log_pred, jacobian, X, n_params, step

    def evaluate(self, theta, jac=True):
        pred = self._f(theta, self.X)
        return pred, (self._j(theta, self.X) if jac else None)

    def grad_hess(self, theta, J, c1, c2):
        g = np.einsum("kn,knp->kp", c1, J)
        H = (J * c2[..., None]).transpose(0, 2, 1) @ J
        K, p = theta.shape
        for j in range(p):
            h = self.step * (1.0 + np.abs(theta[:, j]))
            tp, tm = theta.copy(), theta.copy()
            tp[:, j] += h
            tm[:, j] -= h
            dJ = (self._j(tp, self.X) - self._j(tm, self.X)) / (2 * h)[:, None, None]
            row = np.einsum("kn,knp->kp", c1, dJ)
            H[:, j, :] += 0.5 * row
            H[:, :, j] += 0.5 * row
        return g, H


@dataclass
class ParamTransform:
    """theta = offset + phi @ matrix.T : fixed parameters and tied exponents as data.

    ``matrix`` is (p, q) mapping q free parameters to p model parameters.
    """

    matrix: np.ndarray
    offset: np.ndarray

    @classmethod
    def identity(cls, p: int) -> "ParamTransform":
        return cls(np.eye(p), np.zeros(p))

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        return self.offset + phi @ self.matrix.T

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        return (theta - self.offset) @ np.linalg.pinv(self.matrix).T


class RobustObjective:
    """sum_i w_ki rho(log_pred_k(x_i) - log y_i), with gradient and Hessian in the free parameters.

    ``weights`` is (n,) for one dataset or (R, n) for R resampled datasets; the
    optimiser passes ``rows`` to say which weight row each batch member uses.
    """

    def __init__(self, model: Model, log_y: np.ndarray, *, loss: str = "huber", delta: float = 1e-3,
                 weights: np.ndarray | None = None, transform: ParamTransform | None = None):
        self.model = model
        self.log_y = np.asarray(log_y, float)
        self.loss, self.delta = loss, float(delta)
        self.weights = None if weights is None else np.asarray(weights, float)
        self.transform = transform or ParamTransform.identity(model.n_params)
        self._identity = transform is None or (
            transform.matrix.shape[0] == transform.matrix.shape[1]
            and np.array_equal(transform.matrix, np.eye(transform.matrix.shape[0]))
            and not transform.offset.any())
        self.irls = False

    def _w(self, rows):
        if self.weights is None:
            return 1.0
        return self.weights[rows] if self.weights.ndim == 2 else self.weights

    def _theta(self, phi):
        return phi if self._identity else self.transform.to_theta(phi)

    # Work on blocks of batch members so the (block, n) temporaries stay in cache.
    block_elems = 16384

    def value(self, phi: np.ndarray, rows: np.ndarray) -> np.ndarray:
        b = max(8, self.block_elems // self.log_y.size)
        if phi.shape[0] > b:
            return np.concatenate([self.value(phi[i:i + b], rows[i:i + b]) for i in range(0, phi.shape[0], b)])
        pred, _ = self.model.evaluate(self._theta(phi), jac=False)
        r = pred - self.log_y
        if self.loss == "huber":
            a = np.abs(r)
            rho = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        else:
            rho = robust_loss(r, self.loss, self.delta)[0]
        f = self._wsum(rho, rows)
        f[~np.isfinite(f)] = np.inf
        return f

    def _wsum(self, v, rows):
        if self.weights is None:
            return v.sum(axis=1)
        return np.einsum("kn,kn->k", self.weights[rows], v) if self.weights.ndim == 2 else v @ self.weights

    def value_grad_hess(self, phi, rows):
        b = max(8, self.block_elems // self.log_y.size)
        if phi.shape[0] > b:
            parts = [self.value_grad_hess(phi[i:i + b], rows[i:i + b]) for i in range(0, phi.shape[0], b)]
            return tuple(np.concatenate(z) for z in zip(*parts))
        theta = self._theta(phi)
        pred, cache = self.model.evaluate(theta, jac=True)
        r = pred - self.log_y
        rho, d1, d2 = robust_loss(r, self.loss, self.delta)
        if self.irls:
            # Huber's majoriser: curvature psi(r)/r instead of rho''(r) (= 0 on the linear branch)
            d2 = np.where(d2 > 0, d2, d1 / np.where(r == 0, 1.0, r))
        w = self._w(rows)
        f = self._wsum(rho, rows)
        f[~np.isfinite(f)] = np.inf
        g, H = self.model.grad_hess(theta, cache, w * d1, w * d2)
        if self._identity:
            return f, g, H
        M = self.transform.matrix
        return f, g @ M, M.T @ H @ M


@dataclass
class BatchResult:
    x: np.ndarray  # (K, q) free parameters at the end
    fun: np.ndarray  # (K,) objective
    converged: np.ndarray  # (K,) bool
    n_iter: np.ndarray  # (K,) int


def newton_lm(objective: RobustObjective, x0: np.ndarray, rows: np.ndarray | None = None, *,
              lower: np.ndarray | None = None, upper: np.ndarray | None = None,
              max_iter: int = 500, ftol: float = 1e-14, xtol: float = 1e-10, max_step: float = 4.0,
              patience: int = 5, atol: float = 1e-15, window: int = 20, window_ftol: float = 1e-6,
              callback: Callable[[int, int], None] | None = None) -> BatchResult:
    """Minimise ``objective`` from every row of ``x0`` at once.

    Each iteration takes a Newton step with the exact Hessian made positive
    definite (eigenvalues replaced by their absolute values, floored; this also
    walks away from saddles), capped at ``max_step`` in every coordinate, then
    backtracks (Armijo) on the members whose full step does not decrease the
    objective enough. A member stops when an accepted step changes the objective
    by less than ``ftol`` (relative) and the parameters by less than ``xtol``
    (or the objective has stayed that flat for ``patience`` steps, or fell by less
    than ``window_ftol`` over ``window`` steps: a ridge), or
    when no step length decreases it (a minimum to machine precision).
    """
    x = np.array(x0, dtype=float, copy=True)
    K, q = x.shape
    rows = np.arange(K) if rows is None else np.asarray(rows)
    lo = np.full(q, -np.inf) if lower is None else np.asarray(lower, float)
    hi = np.full(q, np.inf) if upper is None else np.asarray(upper, float)
    x = np.clip(x, lo, hi)
    with np.errstate(all="ignore"):
        f, g, H = objective.value_grad_hess(x, rows)
    ok = np.isfinite(f) & np.isfinite(g).all(1) & np.isfinite(H).all((1, 2))
    f = np.where(ok, f, np.inf)
    if q == 0:  # everything fixed: nothing to optimise
        return BatchResult(x=x, fun=f, converged=ok, n_iter=np.zeros(K, int))
    active = ok.copy()
    converged = np.zeros(K, bool)
    n_iter = np.zeros(K, int)
    n_flat = np.zeros(K, int)  # consecutive steps that barely changed the objective
    f_ref = f.copy()  # objective `window` iterations ago: a slow crawl along a ridge stops too
    shrink = (1.0, 0.25, 0.05, 0.01, 1e-3, 1e-4, 1e-6)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        if callback is not None:
            callback(it, idx.size)
        n_iter[idx] += 1
        with np.errstate(all="ignore"):
            ev, V = np.linalg.eigh(H[idx])
            aev = np.abs(ev)
            aev = np.maximum(aev, 1e-9 * aev.max(axis=1, keepdims=True) + 1e-300)
            ga = g[idx]
            step = -np.einsum("kij,kj,klj,kl->ki", V, 1.0 / aev, V, ga)
            big = np.abs(step).max(axis=1, keepdims=True)
            step *= np.minimum(1.0, max_step / np.maximum(big, 1e-300))
            xa, fa = x[idx], f[idx]
            xn = xa.copy()
            fn = np.full(idx.size, np.inf)
            slope = np.einsum("kq,kq->k", ga, step)
            todo = np.flatnonzero(np.isfinite(step).all(1) & (slope < 0))
            for s in shrink:
                if todo.size == 0:
                    break
                cand = np.clip(xa[todo] + s * step[todo], lo, hi)
                fc = objective.value(cand, rows[idx[todo]])
                good = fc <= fa[todo] + 1e-4 * s * slope[todo]
                good &= fc < fa[todo]
                xn[todo[good]], fn[todo[good]] = cand[good], fc[good]
                todo = todo[~good]
        accept = np.isfinite(fn)
        moved = np.abs(xn - xa).max(1)
        flat = fa - fn <= ftol * np.abs(fa) + atol
        n_flat[idx] = np.where(flat, n_flat[idx] + 1, 0)
        tiny = flat & ((moved <= xtol * (1 + np.abs(xa).max(1))) | (n_flat[idx] >= patience))
        done = (accept & tiny) | ~accept
        acc = idx[accept]
        if acc.size:
            x[acc] = xn[accept]
            with np.errstate(all="ignore"):
                fa2, ga2, Ha2 = objective.value_grad_hess(x[acc], rows[acc])
            f[acc], g[acc], H[acc] = fa2, ga2, Ha2
            broken = acc[~(np.isfinite(ga2).all(1) & np.isfinite(Ha2).all((1, 2)))]
            active[broken] = False  # derivatives overflowed: stop this member where it is
        if (it + 1) % window == 0:
            crawl = idx[(f_ref[idx] - f[idx] <= window_ftol * np.abs(f[idx]) + atol) & ~done]
            converged[crawl] = True
            active[crawl] = False
            f_ref[idx] = f[idx]
        converged[idx[done]] = True
        active[idx[done]] = False
    return BatchResult(x=x, fun=f, converged=converged, n_iter=n_iter)


class LogSumExpDesign:
    """For a law whose log prediction is a :class:`LogSumExpModel` of its ``_design(X)`` (a sum of power laws):
    the model and the log prediction, written once."""

    def _model(self, X):
        return LogSumExpModel(self._design(X))

    def _log_predict(self, theta, X):
        return self._model(X).evaluate(np.atleast_2d(theta), jac=False)[0]
