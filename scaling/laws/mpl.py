"""The multi-power law of Luo et al. 2025 for whole loss curves, joined with model size.

Luo et al. ("A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules", 2025) write the loss after step t of one model as

    L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t),
    LD(t) = B sum_k (eta_(k-1) - eta_k) G(eta_k^-gamma S_k(t)),   G(x) = 1 - (C x + 1)^-beta,

with S1 the summed learning rate after warmup, S_W the warmup's, and S_k(t) the learning rate
summed from step k to t: every drop of the learning rate buys a loss reduction that grows, as
a power law, with the area trained at the lower rate since. Here ``eta`` is the learning rate
over the run's peak and areas are in full-rate tokens (full-rate steps when a curves table
has no tokens), as for ``tissue``: with one peak and one batch size that is the paper's law
with A, B and C rescaled. The constant follows model size the way Chinchilla's does:

    L0(N) = E + A_N / N^alpha_N,

so one fit across sizes predicts any size under any schedule. Fitted to one size, fix
``A_N`` (``fit_each_size`` does: then E is that size's L0).

``decay_by_size=True`` lets the decay term grow with size as well, B (N/1e8)^kappa_B (otherwise
``kappa_B`` is held at 0). On Luo et al.'s three sizes, predicting new schedules at the sizes fitted,
it takes the joint fit's per-curve mean error from 0.191% to 0.150%; carried to larger models than
fitted it made the forecasts of the package's own sweeps worse (median 2.40% -> 4.33%), so it is
off by default and a prediction outside the fitted sizes warns.

A point's loss depends on the learning rate before it, not only on its own inputs: the
inputs are ``N``, ``S1`` (total area, warmup included) and ``eta`` at each point, and
consecutive points of one run (S1 increasing at one N) are its history; the learning rate
is taken as linear between them (a large drop between two points is spread over the interval,
so right after a sudden drop that fell between two logged points the law is off by up to ~0.6%:
log the learning rate where it changes; placing such drops at the interval's end instead was
worse on Luo et al.'s curves, 0.20-0.31% mean error per size against 0.17-0.26%). Give the points of each run in order: a curves table from
:func:`scaling.curves.prepare_curves` is; S1 falling back or N changing starts a new run.
Increases of the learning rate (warmup) buy nothing.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError, ScalingWarning, SettingsError
from . import register_law
from .base import Law, Param

#: sub-drops per interval between two logged points (the learning rate is linear between them)
SUBDIVIDE = 4
#: the smallest eta a drop lands on (a decay to zero would make eta^-gamma infinite)
ETA_FLOOR = 1e-4
#: drops larger than this (in units of the peak rate) between two points are split into sub-drops
SMALL_DROP = 0.02
#: the size at which A is the S1 term's coefficient
N_REF = 1e8
#: points of one run a fit keeps (evenly spaced; more are thinned with a warning): every point pairs with every
#: earlier drop of the learning rate, so the work grows with the square of a run's points (a run logged at each of
#: 3,000 steps of a cosine had 4.5M pairs and needed 22 GB). Luo et al.'s training curves have 188 points a run
MAX_POINTS_PER_RUN = 200
#: at most this many (parameter vector x drop pair) values at once when predicting for many parameter vectors
CHUNK_ELEMENTS = 4_000_000


def run_starts(N: np.ndarray, S1: np.ndarray) -> np.ndarray:
    """Boolean: point i starts a new run (the first point, S1 falling, or N changing). S1 that stays level is one
    run's stretch at a learning rate of 0 (a schedule that decays to zero and stays there)."""
    new = np.ones(S1.size, bool)
    new[1:] = (np.diff(S1) < 0) | (np.diff(N) != 0)
    return new


def thin_runs(df: pd.DataFrame, cap: int, name: str = "mpl") -> pd.DataFrame:
    """At most ``cap`` evenly spaced points of each run (its first and last kept), with a warning naming how many
    runs were thinned. Runs are the ``run`` column's, else the stretches where S1 grows at one N."""
    runs = (pd.factorize(df["run"])[0] if "run" in df.columns else
            np.cumsum(run_starts(df["N"].to_numpy(float), df["S1"].to_numpy(float))))
    sizes = np.bincount(runs)
    if sizes.max() <= cap:
        return df
    keep = np.zeros(len(df), bool)
    for r in range(sizes.size):
        idx = np.flatnonzero(runs == r)
        keep[idx[np.unique(np.round(np.linspace(0, idx.size - 1, min(cap, idx.size))).astype(int))]] = True
    long = int((sizes > cap).sum())
    warnings.warn(f"{name}: {long} run(s) have more than {cap} points (up to {int(sizes.max()):,}); each is fitted on "
                  f"{cap} evenly spaced ones (every point pairs with every earlier drop of the learning rate, so the "
                  "work grows with the square of a run's points; the areas S1 were computed from every step)",
                  ScalingWarning, stacklevel=5)
    return df[keep].reset_index(drop=True)


def separate_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Runs in an order where each one's start shows (the law finds a run's start where S1 falls or N changes):
    a run logged only from late steps, after a run of the same size that ended at a smaller S1, would read as that
    run's continuation and borrow its drops of the learning rate. Such tables are reordered, within each size, by
    decreasing last S1 (every run then starts below where the one before it ended); others are left as they are."""
    if "run" not in df.columns or df.empty:
        return df
    code = pd.factorize(df["run"])[0]
    S1, N = df["S1"].to_numpy(float), df["N"].to_numpy(float)
    hidden = (np.diff(code) != 0) & (np.diff(N) == 0) & (np.diff(S1) >= 0)  # a new run the law would not see
    if not hidden.any():
        return df
    last = pd.Series(S1).groupby(code).transform("last").to_numpy()
    order = np.lexsort((np.arange(len(df)), code, -last, N))  # by size, then decreasing last S1, rows in order
    return df.iloc[order].reset_index(drop=True)


class DropPairs:
    """Every (point, earlier learning-rate drop) pair of a set of curve points, built once per data set.

    ``point``: which point; ``d``: the size of the drop (in units of the peak rate); ``log_eta``: the
    rate it dropped to; ``S``: the area trained since it (S_k(t)). LD of all points is then a sum
    over pairs, for any parameters.
    """

    def __init__(self, X: Mapping[str, np.ndarray], subdivide: int = SUBDIVIDE):
        N, S1, eta = (np.asarray(X[c], float) for c in ("N", "S1", "eta"))
        self.n = S1.size
        starts = np.flatnonzero(run_starts(N, S1))
        ends = np.append(starts[1:], S1.size)
        pts, ds, les, Ss = [], [], [], []
        for a, b in zip(starts, ends):
            s, e = S1[a:b], eta[a:b]
            drop = e[:-1] - e[1:]
            j = np.flatnonzero(drop > 0)  # intervals (j, j+1) in which the rate fell
            if not j.size:
                continue
            # a large drop between two points is split into up to `subdivide` equal sub-drops at the
            # midpoints of equal sub-intervals, each landing on the rate interpolated there
            m = np.clip(np.ceil(drop[j] / SMALL_DROP), 1, subdivide).astype(int)
            jj = np.repeat(j, m)
            k = np.concatenate([np.arange(mi) for mi in m])
            mm = np.repeat(m, m)
            pos = s[jj] + (k + 0.5) / mm * (s[jj + 1] - s[jj])
            lands = np.maximum(e[jj] - (k + 1.0) / mm * drop[jj], ETA_FLOOR)
            d_sub = drop[jj] / mm
            first_after = jj + 1  # the first point that sees this drop (ascending)
            for i in range(int(j[0]) + 1, b - a):
                n_seen = int(np.searchsorted(first_after, i, side="right"))
                pts.append(np.full(n_seen, a + i))
                ds.append(d_sub[:n_seen])
                les.append(np.log(lands[:n_seen]))
                Ss.append(s[i] - pos[:n_seen])
        if pts:
            self.point = np.concatenate(pts)
            self.d, self.log_eta, self.S = np.concatenate(ds), np.concatenate(les), np.concatenate(Ss)
        else:
            self.point = np.zeros(0, int)
            self.d = self.log_eta = self.S = np.zeros(0)
        self.log_S = np.log(np.maximum(self.S, 1e-300))
        # pairs come grouped by point, in order: per-point sums are segment sums
        self._has, self._first = np.unique(self.point, return_index=True)

    def total(self, W: np.ndarray) -> np.ndarray:
        """Per-point sums of per-pair values W (K, pairs) -> (K, n)."""
        out = np.zeros((W.shape[0], self.n))
        if self.point.size:
            out[:, self._has] = np.add.reduceat(W, self._first, axis=1)
        return out


class MPLModel:
    """The law's log prediction with its exact gradient and Hessian, for K parameter vectors at once.

    theta = (log E, log A_N, alpha_N, log A, alpha, log B, log C, beta, gamma, kappa, kappa_B). With x = C eta^-gamma S,
    u = log(1 + x), s = x / (1 + x) and p = (1 + x)^-beta, every derivative of LD is B times a per-point
    sum over drop pairs of d times one of a few pair terms; the Hessian of log L follows from
    d2 log L = d2 L / L - J J^T (J = dL / L), so no finite differences are needed.
    """

    n_params = 11

    def __init__(self, X: Mapping[str, np.ndarray]):
        self.X = X
        self.pairs = DropPairs(X)
        self.lN, self.lS1 = np.log(X["N"])[None, :], np.log(X["S1"])[None, :]
        self.lNr = self.lN - np.log(N_REF)

    def evaluate(self, theta, jac=True):
        th = np.atleast_2d(theta)
        K = th.shape[0]
        per = max(1, CHUNK_ELEMENTS // max(self.pairs.point.size, 1))
        if not jac and K > per:  # many resamples (an interval) over long curves: a few at a time
            return np.concatenate([self.evaluate(th[i:i + per], jac=False)[0] for i in range(0, K, per)]), None
        col = [th[:, i:i + 1] for i in range(11)]
        lE, lAN, aN, lA, al, lB, lC, be, ga, ka, kb = col
        P = self.pairs
        tN = np.exp(lAN - aN * self.lN)
        tA = np.exp(lA - al * self.lS1 + ka * self.lNr)
        E, B = np.exp(lE), np.exp(lB + kb * self.lNr)
        d = P.d[None, :]
        if P.point.size:
            x = np.exp(lC - ga * P.log_eta[None, :] + P.log_S[None, :])
            u = np.log1p(x)
            pw = np.exp(-be * u)
            if not jac:
                sums = P.total(d * (1.0 - pw))[None]
            else:
                s = x / (1.0 + x)
                le = P.log_eta[None, :]
                q1 = be * pw * s * (be * s - (1.0 - s))
                q2 = pw * s * (be * u - 1.0)
                q3 = u * u * pw
                ps = be * pw * s
                W = np.stack([1.0 - pw, ps, u * pw, ps * le, q1, q2, q3, le * q1, le * q2, le * le * q1])
                sums = P.total((W * d[None]).reshape(-1, W.shape[-1])).reshape(W.shape[0], K, -1)
        else:
            sums = np.zeros((1 if not jac else 10, K, tN.shape[1]))
        LD = B * sums[0]
        L = E + tN + tA - LD
        with np.errstate(invalid="ignore", divide="ignore"):
            pred = np.where(L > 0, np.log(np.where(L > 0, L, 1.0)), np.nan)
        if not jac:
            return pred, None
        FC, Fb, Fg = B * sums[1], B * sums[2], -B * sums[3]
        dL = np.stack([E + 0 * L, tN, -tN * self.lN, tA, -tA * self.lS1, -LD, -FC, -Fb, -Fg, tA * self.lNr,
                       -LD * self.lNr], axis=-1)
        H = np.zeros(L.shape + (11, 11))
        H[..., 0, 0] = E
        H[..., 1, 1] = tN
        H[..., 1, 2] = H[..., 2, 1] = -tN * self.lN
        H[..., 2, 2] = tN * self.lN * self.lN
        # the S1 term is exp(linear in (log A, alpha, kappa)): its Hessian is tA c c^T
        c = {3: 1.0, 4: -self.lS1, 9: self.lNr}
        for i, ci in c.items():
            for j, cj in c.items():
                H[..., i, j] = tA * ci * cj
        # d2 L = -d2 LD over (log B, log C, beta, gamma)
        d2 = {(5, 5): LD, (5, 6): FC, (5, 7): Fb, (5, 8): Fg,
              (6, 6): -B * sums[4], (6, 7): -B * sums[5], (6, 8): B * sums[7],
              (7, 7): -B * sums[6], (7, 8): B * sums[8], (8, 8): -B * sums[9]}
        for (i, j), v in d2.items():
            H[..., i, j] = H[..., j, i] = -v
        # LD carries (N/1e8)^kappa_B: its derivative in kappa_B is the LD term times log(N/1e8)
        H[..., 10, 10] = -LD * self.lNr ** 2
        for i in (5, 6, 7, 8):
            H[..., 10, i] = H[..., i, 10] = dL[..., i] * self.lNr
        return pred, (dL / L[..., None], H / L[..., None, None])

    def grad_hess(self, theta, cache, c1, c2):
        J, H2 = cache
        g = np.einsum("kn,knp->kp", c1, J)
        H = np.einsum("kn,knp,knq->kpq", c2 - c1, J, J) + np.einsum("kn,knpq->kpq", c1, H2)
        return g, H


@register_law
class MultiPowerLaw(Law):
    """L = E + A_N/N^alpha_N + A S1^-alpha - LD(t): Luo et al.'s multi-power law joined with model size."""

    name = "mpl"
    inputs = ("N", "S1", "eta")
    parameters = (Param("E", log=True, description="loss floor as N grows (L0 at one size)"),
                  Param("A_N", log=True), Param("alpha_N", lower=0.0),
                  Param("A", log=True, description="power law in the learning-rate area S1 (warmup included)"),
                  Param("alpha", lower=0.0),
                  Param("B", log=True, description="loss reduction per unit drop of the learning rate"),
                  Param("C", log=True), Param("beta", lower=0.0), Param("gamma", lower=0.0),
                  Param("kappa", description="the S1 term's growth with size: A (N/1e8)^kappa S1^-alpha"),
                  Param("kappa_B", description="the decay term's growth with size: B (N/1e8)^kappa_B; "
                                               "0 unless decay_by_size"))
    formula: ClassVar[str] = ("L(N, t) = E + A_N/N^alpha_N + A (N/1e8)^kappa S1(t)^-alpha - B (N/1e8)^kappa_B sum_k "
                              "(eta_k-1 - eta_k) [1 - (C eta_k^-gamma S_k(t) + 1)^-beta]")
    bootstrap_groups: ClassVar[str | None] = "run"
    curve_law = True
    nonnegative_inputs: ClassVar[tuple[str, ...]] = ("eta",)  # a schedule that decays to 0 (drops land on ETA_FLOOR)

    def __init__(self, *, decay_by_size: bool = False, **kwargs):
        self.decay_by_size = bool(decay_by_size)
        super().__init__(**kwargs)
        if not self.decay_by_size and "kappa_B" in set(self.bounds) | {n for t in self.tie for n in t}:
            raise SettingsError(f"{self.name}: kappa_B is held at 0 unless decay_by_size (--decay-by-size): bound or "
                                "tie it with that on")

    @classmethod
    def from_params(cls, **values: float):
        """Given values (kappa_B 0 when not given: the law before decay_by_size); a non-zero kappa_B is a law
        with decay_by_size."""
        values = {"kappa_B": 0.0, **values}
        law, state = cls._parametrised(values, decay_by_size=bool(values["kappa_B"]))
        return cls.result_class(law, state)

    def _extra_fixed(self) -> dict[str, float]:
        return {} if self.decay_by_size else {"kappa_B": 0.0}

    def _settings_extra(self):
        return {"decay_by_size": self.decay_by_size}

    def _restore_extra(self, d):
        self.decay_by_size = bool((d.get("settings") or {}).get("decay_by_size", False))
        return {}

    @classmethod
    def _upgrade_dict(cls, d):
        """Fit files written before ``kappa_B`` existed: it was 0 (one B for every size)."""
        params = d.get("params")
        if not isinstance(params, Mapping) or "kappa_B" in params or set(params) != set(cls.param_names()) - {"kappa_B"}:
            return d  # the current layout, or damaged: validation names what is wrong
        d = copy.deepcopy(dict(d))
        d["params"]["kappa_B"] = 0.0
        boot = d.get("bootstrap")
        rows = boot.get("params") if isinstance(boot, Mapping) else None
        if isinstance(rows, list) and all(isinstance(r, list) and len(r) == len(params) for r in rows):
            boot["params"] = [r + [0.0] for r in rows]
        return d

    def _input_notes(self, fit, X) -> list[str]:
        rng = (fit._state.get("data_range_") or {}).get("N")
        if not (self.decay_by_size and "kappa_B" not in self.fixed and rng):
            return []
        N = np.asarray(X["N"], float)
        out = N[(N > 1.05 * rng[1]) | (N < rng[0] / 1.05)]
        if not out.size:
            return []
        return [f"{self.name}: decay_by_size carries kappa_B = {fit.params_['kappa_B']:.3g} to N = {out[0]:.3g}, "
                f"outside the sizes fitted ({rng[0]:.3g} to {rng[1]:.3g}); forecasts of larger models than fitted were "
                "worse with it on the package's own sweeps (median error 2.4% -> 4.3%): for new sizes, refit without "
                "decay_by_size"]

    def _predict(self, fit, X):
        for note in self._input_notes(fit, X):
            warnings.warn(note, ScalingWarning, stacklevel=3)
        return super()._predict(fit, X)

    def _frame(self, data, **kw):
        df = super()._frame(data, **kw)
        return separate_runs(thin_runs(df, MAX_POINTS_PER_RUN, self.name)) if kw.get("target", True) else df

    def _check_data(self, X) -> None:
        super()._check_data(X)
        if self.decay_by_size and "kappa_B" not in self.fixed and np.unique(X["N"]).size < 2:
            raise DataError(f"{self.name}: decay_by_size fits how the decay term grows with N (kappa_B), and these "
                            f"curves have one model size; drop decay_by_size (--decay-by-size), or add other sizes")

    def _input_frozen(self, name: str) -> bool:
        # one model size: the N term is a constant that E absorbs once A_N is fixed
        return name == "N" and "A_N" in self.fixed

    # ------------------------------------------------------------------ form
    def _log_predict(self, theta, X):
        pred, _ = MPLModel(X).evaluate(np.atleast_2d(theta), jac=False)
        return pred

    def _model(self, X):
        return MPLModel(X)  # the drop pairs are built once per data set: the optimiser calls it many times

    def _init_grid(self, X, log_y):
        y = np.exp(log_y)
        lo, span = float(y.min()), float(max(y.max() - y.min(), 1e-3 * y.min()))
        s1 = float(np.median(X["S1"]))
        n = float(np.exp(np.mean(np.log(X["N"]))))
        rows = []
        for fE, aN, fN, al, fA, fB, cS, be, ga in itertools.product(
                (0.6, 0.85), (0.3,), (0.1,), (0.3, 0.6), (0.3, 1.0), (0.1, 0.4), (0.3, 3.0), (0.5,), (0.5,)):
            E = fE * lo * (1 - fN)
            AN = fN * lo * n ** aN
            A = fA * span * s1 ** al
            B = fB * lo
            C = cS / (0.05 * s1)
            rows.append((np.log(E), np.log(AN), aN, np.log(A), al, np.log(B), np.log(C), be, ga, 0.0, 0.0))
        return np.array(rows, float)

    def _check_terms(self, params, X, y) -> None:
        pass


def fit_each_size(data, *, columns=None, **settings) -> dict[float, Any]:
    """One fit per model size (Luo et al.'s per-size fits): E is each size's L0, the N term fixed away."""
    import pandas as pd

    from ..data import read_table

    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    fixed = {**settings.pop("fixed", {}), "A_N": 1e-12, "alpha_N": 0.0, "kappa": 0.0, "kappa_B": 0.0}
    return {float(N): MultiPowerLaw(fixed=fixed, **settings).fit(g.reset_index(drop=True), columns=columns)
            for N, g in df.groupby("N", sort=True)}


def synthetic_curves(truth: Mapping[str, float], *, sizes=(1e5, 4e5, 1.6e6), schedules=("cosine", "constant", "wsd"),
                     steps: int = 800, every: int = 20, tokens_per_step: float = 1.0, noise: float = 0.001,
                     seed: int = 0, first: int | None = None):
    """Logged points (run, N, step, lr, loss) of runs whose every step follows a known multi-power law.

    For tests and examples: the loss of each step is the law's with the exact per-step history; rows are
    every ``every``-th step after the warmup (5%; after step ``first`` if given), with multiplicative
    Gaussian noise of ``noise``.
    ``schedules`` are the package's (cosine, wsd, constant) or ``"step:F:R"``: the rate falls to R x peak
    at fraction F of the run.
    """
    import pandas as pd

    from ..schedules import schedule

    law = MultiPowerLaw.from_params(**{"kappa_B": 0.0, **truth})
    rng = np.random.default_rng(seed)
    out = []
    for N in sizes:
        for kind in schedules:
            if kind.startswith("step:"):
                _, f, r = kind.split(":")
                lr = schedule(steps, {"lr": 1e-3}, {"type": "constant", "warmup": 0.05})
                lr[int(float(f) * steps):] *= float(r)
            else:
                lr = schedule(steps, {"lr": 1e-3}, {"type": kind, "warmup": 0.05})
            eta = lr / lr.max()
            S1 = np.cumsum(eta) * tokens_per_step
            L = law.predict(N=np.full(steps, float(N)), S1=S1, eta=eta)
            keep = np.arange((int(0.05 * steps) if first is None else first) + every - 1, steps, every)
            loss = L[keep] * np.exp(noise * rng.standard_normal(keep.size))
            out.append(pd.DataFrame({"run": f"N{N:.3g}-{kind}", "N": float(N), "step": keep, "lr": lr[keep],
                                     "S1": S1[keep], "eta": eta[keep], "loss": loss}))
    return pd.concat(out, ignore_index=True)
