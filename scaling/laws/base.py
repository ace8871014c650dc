"""The law contract: settings in ``__init__``; ``fit`` returns a frozen ``FitResult`` and changes nothing.

A law subclass declares its inputs, its parameters (each stored internally either
as-is or as a log) and three pure pieces: the log prediction, a model object the
batched optimiser can differentiate, and a grid of starting points. Everything
else (validation, fixed and tied parameters, bounds, multi-start, bootstrap,
intervals, JSON) lives here once. ``fit`` runs ``_fit`` (which sets the ``*_``
attributes) on a private copy of the law and wraps that copy in a ``FitResult``
(result.py): the law object a user holds stays a spec. Multi-stage procedures
(data-constrained, Gao, IsoFLOP, envelope, hyperparameters) override ``_fit``.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from .._threads import limit_threads
from ..data import prepare
from ..diagnostics import check_extrapolation, check_floor, check_identification, check_residuals, check_thin_data
from ..errors import DataError, FitError, NotFittedError, ScalingWarning, SettingsError, UnsupportedError
from ..fitting.bootstrap import bootstrap_fit, percentile_interval, resample_weights
from ..fitting.optimize import BatchResult, Model, ParamTransform, RobustObjective, newton_lm
from .result import FitResult, warnings_at_caller


@dataclass(frozen=True)
class Param:
    """A public parameter; ``log=True`` means the optimiser works on its logarithm."""

    name: str
    log: bool = False
    description: str = ""
    #: default bounds on the public value (None: unbounded); a user's bounds for the parameter replace them
    lower: float | None = None
    upper: float | None = None


def _pct(x: float) -> str:
    return ">1000%" if x >= 10 else f"{100 * x:.0f}%"


def _as_1d(v) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=float))


class Law:
    """Base class of all laws. Subclasses set the class attributes and the hooks."""

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    target: ClassVar[str] = "loss"
    parameters: ClassVar[tuple[Param, ...]] = ()
    formula: ClassVar[str] = ""
    #: resample whole groups (e.g. the points of one run's curve) in the bootstrap, when the column exists
    bootstrap_groups: ClassVar[str | None] = None
    #: fitted to per-step points of training curves (plans and watch use it), not to final losses
    curve_law: ClassVar[bool] = False
    #: predicts a run's loss from its inputs (False: it predicts something else, e.g. optimal hyperparameters)
    predicts_loss: ClassVar[bool] = True
    #: the figure `scaling plot` draws: "fit" (data and curves), "isoflop" (profiles), "overopt" (Gao Fig. 1)
    figure: ClassVar[str] = "fit"
    #: inputs that may be zero (everything else must be positive)
    nonnegative_inputs: ClassVar[tuple[str, ...]] = ()

    #: the constraint and objective settings this law honours; a non-default value of any other is refused
    supports: ClassVar[frozenset[str]] = frozenset({"loss", "delta", "fixed", "bounds", "tie", "params", "prune"})
    #: the objective it minimises when ``loss`` is not given
    default_loss: ClassVar[str] = "huber"

    def __init__(self, *, loss: str | None = None, delta: float = 1e-3, fixed: Mapping[str, float] | None = None,
                 bounds: Mapping[str, tuple[float, float]] | None = None, tie: list[tuple[str, ...]] | None = None,
                 params: Any = None, bootstrap: int = 1000, seed: int = 0, level: float = 0.9,
                 prune: bool = True):
        self.loss = self.default_loss if loss is None else loss
        self.delta = delta
        self.fixed = dict(fixed or {})
        self.bounds = dict(bounds or {})
        self.tie = [tuple(t) for t in (tie or [])]
        self.params = params
        self.bootstrap = bootstrap
        self.seed = seed
        self.level = level
        self.prune = prune
        self._check_settings()

    def _check_settings(self) -> None:
        """Refuse, at construction, what this law would not honour: never a silently ignored setting."""
        given = {"loss": self.loss != self.default_loss, "delta": self.delta != 1e-3, "fixed": bool(self.fixed),
                 "bounds": bool(self.bounds), "tie": bool(self.tie), "params": self.params is not None,
                 "prune": self.prune is not True}
        bad = [k for k, v in given.items() if v and k not in self.supports]
        if bad:
            raise SettingsError(f"{self.name} does not take {', '.join(bad)}: {self._unsupported_reason()}")
        if self.loss not in ("huber", "squared"):
            raise SettingsError(f"loss must be 'huber' or 'squared', got {self.loss!r}")
        if not (isinstance(self.delta, (int, float)) and self.delta > 0):
            raise SettingsError(f"delta (the Huber threshold) must be a positive number, got {self.delta!r}")
        if not (isinstance(self.level, (int, float)) and 0 < self.level < 1):
            raise SettingsError(f"level must be in (0, 1), got {self.level!r}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, (int, np.integer)) or self.bootstrap < 0:
            raise SettingsError(f"bootstrap must be a whole number of resamples >= 0, got {self.bootstrap!r}")
        names = self.param_names()
        for what, keys in (("fixed", list(self.fixed)), ("bounds", list(self.bounds)),
                           ("tie", [n for t in self.tie for n in t])):
            unknown = [k for k in keys if k not in names]
            if unknown:
                raise SettingsError(f"{self.name}: {what} names unknown parameter(s) {unknown}; parameters are {names}")
        for k, v in self.fixed.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise SettingsError(f"{self.name}: fixed {k} must be a finite number, got {v!r}")
        for k, b in self.bounds.items():
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise SettingsError(f"{self.name}: bounds for {k} must be (low, high), got {b!r}")
            lo, hi = (-math.inf if b[0] is None else b[0]), (math.inf if b[1] is None else b[1])
            if lo > hi:
                raise SettingsError(f"{self.name}: bounds for {k} are empty: {b!r}")
        if self.params is not None:
            unknown = [k for k in self.params if k not in names]
            if unknown:
                raise SettingsError(f"{self.name}: params names unknown parameter(s) {unknown}; parameters are {names}")
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Fixed values, ties and bounds that cannot all hold are an error, never one silently winning."""
        group = {n: {n} for n in self.param_names()}
        for t in list(self.tie) + self._extra_ties():
            merged = set().union(*(group[n] for n in t))
            for n in merged:
                group[n] = merged
        seen = set()
        for n, members in group.items():
            if id(members) in seen:
                continue
            seen.add(id(members))
            values = {m: float(self.fixed[m]) for m in sorted(members) if m in self.fixed}
            if len(set(values.values())) > 1:
                raise SettingsError(f"{self.name}: {sorted(members)} are tied but fixed to different values {values}; "
                                    "fix one of them, or drop the tie")
            if not values:
                continue
            v = next(iter(values.values()))
            for m in sorted(members):
                lo, hi = self.bounds.get(m, (None, None))
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    how = f"fixed {m} = {v:g}" if m in values else f"{m} is tied to a fixed {v:g}"
                    raise SettingsError(f"{self.name}: {how}, outside the bounds you gave it [{lo}, {hi}]")

    def _unsupported_reason(self) -> str:
        return "this law's fit has no such setting"

    @classmethod
    def references(cls) -> list[FitResult]:
        """Published fits of this law to draw beside a user's (each with a ``label``)."""
        return []

    @classmethod
    def options(cls) -> set[str]:
        """The keyword settings this law's constructor takes (beyond the common ones of every law)."""
        import inspect

        names = set()
        for k in cls.__mro__:
            if "__init__" in vars(k) and k is not Law:
                names |= {p.name for p in inspect.signature(k.__init__).parameters.values()
                          if p.kind is p.KEYWORD_ONLY}
        return names

    def _extra_ties(self) -> list[tuple[str, ...]]:
        """Ties a law's own settings imply (e.g. ``tie_exponents``), on top of the user's ``tie``."""
        return []

    # ------------------------------------------------------------------ hooks
    def _log_predict(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """log prediction, (K, n) for K internal parameter vectors."""
        raise NotImplementedError

    def _model(self, X: Mapping[str, np.ndarray]) -> Model:
        raise NotImplementedError

    def _init_grid(self, X: Mapping[str, np.ndarray], log_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_data(self, X: Mapping[str, np.ndarray]) -> None:
        for name in self.inputs:
            if np.unique(X[name]).size < 2 and not self._input_frozen(name):
                raise DataError(
                    f"all {X[name].size} points share one value of {name} ({X[name][0]:.4g}); "
                    f"{self.name} needs several distinct {name} to estimate how loss scales with it "
                    f"(add runs at other {name}, or fix that term's parameters)"
                )

    def _input_frozen(self, name: str) -> bool:
        return False

    def _check_terms(self, X: Mapping[str, np.ndarray], y: np.ndarray) -> None:
        """After a fit: warn when a term of the law vanished (laws with additive terms override)."""

    # ------------------------------------------------------- names and values
    @classmethod
    def param_names(cls) -> list[str]:
        return [p.name for p in cls.parameters]

    @classmethod
    def _to_internal(cls, values: Mapping[str, float]) -> np.ndarray:
        out = []
        for p in cls.parameters:
            v = float(values[p.name])
            if p.log:
                if v <= 0:
                    raise SettingsError(f"{cls.name}: parameter {p.name} must be positive, got {v}")
                v = math.log(v)
            out.append(v)
        return np.array(out)

    @classmethod
    def _to_public(cls, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float, copy=True)
        for i, p in enumerate(cls.parameters):
            if p.log:
                theta[..., i] = np.exp(theta[..., i])
        return theta

    @classmethod
    def from_params(cls, **values: float) -> FitResult:
        """A result holding given parameter values (published, or known): it predicts; no fit, no uncertainty."""
        law = cls._parametrised(values)
        return FitResult(law._spec(), law)

    @classmethod
    def _parametrised(cls, values: Mapping[str, float], **settings) -> "Law":
        names = cls.param_names()
        unknown = set(values) - set(names)
        missing = set(names) - set(values)
        if unknown or missing:
            raise SettingsError(f"{cls.name} takes parameters {names}; unknown {sorted(unknown)}, missing {sorted(missing)}")
        law = cls(bootstrap=0, **settings)
        law._set_params(cls._to_internal(values), values)
        return law

    def _spec(self) -> "Law":
        """A copy of this law's settings without any fitted state (attributes ending in ``_``)."""
        spec = copy.copy(self)
        spec.__dict__ = copy.deepcopy({k: v for k, v in vars(self).items() if not k.endswith("_")})
        return spec

    def _set_params(self, theta: np.ndarray, public: Mapping[str, float] | None = None) -> None:
        self.theta_ = np.asarray(theta, float)
        if public is None:  # from a fit; given values (published, loaded) are kept exactly
            public = dict(zip(self.param_names(), self._to_public(self.theta_)))
        self.params_ = {n: float(public[n]) for n in self.param_names()}

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "params_")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is a law spec and holds no parameters: call .fit(data), which returns "
                f"a FitResult that predicts (result = law.fit(data); result.predict(...)), or build one from "
                f"known values with {type(self).__name__}.from_params(...)"
            )

    def _require_bootstrap(self) -> None:
        self._require_fitted()
        if getattr(self, "bootstrap_theta_", None) is None or len(self.bootstrap_theta_) == 0:
            raise FitError(
                "this law has no bootstrap samples, so it has no intervals: fit with bootstrap > 0 "
                "(the CLI's --bootstrap B)"
            )

    # --------------------------------------------------------- parametrisation
    def constraints(self) -> tuple[ParamTransform, np.ndarray, np.ndarray, list[list[int]]]:
        """This law's settings as the optimiser takes them: the map from free coordinates to internal
        parameters (fixed and tied ones folded in), bounds on the free coordinates, and the groups of
        parameters each free coordinate moves. Multi-stage procedures use it to refit a stage."""
        specs = self.parameters
        names = self.param_names()
        index = {n: i for i, n in enumerate(names)}
        fixed, tie = dict(self.fixed), list(self.tie) + self._extra_ties()
        bounds = {p.name: (p.lower, p.upper) for p in specs if p.lower is not None or p.upper is not None}
        bounds.update(self.bounds)
        if self.params is not None:  # an lmfit.Parameters (or any mapping of objects with those attributes)
            for pname, par in self.params.items():
                if pname not in index:
                    raise SettingsError(f"{self.name}: unknown parameter {pname!r}; parameters are {names}")
                expr = getattr(par, "expr", None)
                if expr:
                    if expr.strip() not in index:
                        raise SettingsError(f"{self.name}: only ties of the form {pname}.expr = '<other parameter>' are supported, got {expr!r}")
                    tie.append((expr.strip(), pname))
                elif not getattr(par, "vary", True):
                    fixed[pname] = float(par.value)
                lo, hi = getattr(par, "min", -np.inf), getattr(par, "max", np.inf)
                if np.isfinite(lo) or np.isfinite(hi):
                    bounds[pname] = (lo, hi) if pname not in self.bounds else self.bounds[pname]
        for n in list(fixed) + list(bounds) + [x for t in tie for x in t]:
            if n not in index:
                raise SettingsError(f"{self.name}: unknown parameter {n!r}; parameters are {names}")
        # groups of tied internal coordinates
        group_of = list(range(len(names)))
        for t in tie:
            root = group_of[index[t[0]]]
            for n in t[1:]:
                if specs[index[n]].log != specs[index[t[0]]].log:
                    raise SettingsError(f"{self.name}: cannot tie {t[0]} and {n} (different scales)")
                old = group_of[index[n]]
                group_of = [root if g == old else g for g in group_of]
        offset = np.zeros(len(names))
        fixed_idx = set()
        for n, v in fixed.items():
            i = index[n]
            offset[i] = self._to_internal_one(specs[i], v)
            for j, g in enumerate(group_of):
                if g == group_of[i]:
                    fixed_idx.add(j)
                    offset[j] = offset[i]
        groups: list[list[int]] = []
        for g in dict.fromkeys(group_of):
            members = [j for j, gj in enumerate(group_of) if gj == g and j not in fixed_idx]
            if members:
                groups.append(members)
        M = np.zeros((len(names), len(groups)))
        for k, members in enumerate(groups):
            M[members, k] = 1.0
        lower = np.full(len(groups), -np.inf)
        upper = np.full(len(groups), np.inf)
        for n, (lo, hi) in bounds.items():
            if n in fixed:
                continue  # a fixed value may sit outside a default bound (e.g. a published negative exponent)
            i = index[n]
            lo_i = -np.inf if lo is None else self._to_internal_one(specs[i], lo, bound=True)
            hi_i = np.inf if hi is None else self._to_internal_one(specs[i], hi, bound=True)
            for k, members in enumerate(groups):
                if i in members:
                    lower[k], upper[k] = max(lower[k], lo_i), min(upper[k], hi_i)
        if (lower > upper).any():
            raise SettingsError(f"{self.name}: bounds are empty: {bounds}")
        return ParamTransform(M, offset), lower, upper, groups

    @staticmethod
    def _to_internal_one(spec: Param, v: float, bound: bool = False) -> float:
        v = float(v)
        if not spec.log:
            return v
        if v <= 0:
            if bound:
                return -np.inf
            raise SettingsError(f"parameter {spec.name} must be positive, got {v}")
        return math.log(v)

    # -------------------------------------------------------------------- data
    def _frame(self, data, *, columns=None, drop_highest_loss=0, dropna=False, target=True) -> pd.DataFrame:
        required = list(self.inputs) + ([self.target] if target else [])
        return prepare(data, required, columns=columns, drop_highest_loss=drop_highest_loss,
                       dropna=dropna, target=self.target, nonnegative=self.nonnegative_inputs)

    def _inputs_from(self, data=None, **inputs) -> dict[str, np.ndarray]:
        if data is not None:
            if isinstance(data, pd.DataFrame):
                missing = [c for c in self.inputs if c not in data.columns]
                if missing:
                    df = self._frame(data, target=False)
                else:
                    df = data
                cols = {c: _as_1d(df[c]) for c in self.inputs}
            elif isinstance(data, Mapping):
                cols = {c: _as_1d(data[c]) for c in self.inputs if c in data}
            else:
                raise DataError(f"pass a DataFrame or keyword arrays ({', '.join(self.inputs)}), got {type(data).__name__}")
            inputs = {**cols, **inputs}
        missing = [c for c in self.inputs if c not in inputs]
        if missing:
            raise DataError(f"{self.name} predicts from {list(self.inputs)}; missing {missing}")
        arrays = np.broadcast_arrays(*[_as_1d(inputs[c]) for c in self.inputs])
        X = {c: np.ascontiguousarray(a, dtype=float) for c, a in zip(self.inputs, arrays)}
        for c, a in X.items():
            if not np.all(np.isfinite(a)) or np.any(a < 0) or (c not in self.nonnegative_inputs and np.any(a == 0)):
                raise DataError(f"{c} must be finite and positive to predict, got {a[(~np.isfinite(a)) | (a <= 0)][:3]}")
        return X

    # --------------------------------------------------------------------- fit
    def fit(self, data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> FitResult:
        """Fit to a run table (DataFrame or CSV/Parquet path); returns a frozen ``FitResult``.

        The law itself is not changed: the fit runs on a private copy, and the result
        keeps a copy of the settings it was fitted with (``result.law``).
        """
        work = self._spec()
        with warnings_at_caller():  # each warning names the caller's line, whichever stage raised it
            work._fit(data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)
        return FitResult(self._spec(), work)

    def _fit(self, data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> "Law":
        """The fit itself, on the private copy: sets the ``*_`` attributes. Multi-stage laws override it."""
        self._check_settings()  # settings may have been changed since construction
        df = self._frame(data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)
        X = {c: df[c].to_numpy(float) for c in self.inputs}
        y = df[self.target].to_numpy(float)
        transform, lower, upper, groups = self.constraints()
        n_free = len(groups)
        self._check_data(X)
        if y.size <= n_free:
            raise DataError(
                f"{y.size} point(s) for {n_free} free parameter(s): {self.name} needs more runs than "
                f"parameters (add runs, or fix/tie parameters)"
            )
        check_thin_data(self.name, X, n_free)
        log_y = np.log(y)
        model = self._model(X)
        with limit_threads(1), np.errstate(all="ignore"):
            theta0 = self._init_grid(X, log_y)
            if self.params is not None:
                user = {n: getattr(p, "value", None) for n, p in self.params.items()}
                if all(user.get(n) is not None for n in self.param_names()):
                    theta0 = np.vstack([theta0, self._to_internal(user)])
            phi0 = transform.to_phi(theta0)
            phi0 = np.unique(np.clip(phi0, lower, upper), axis=0)
            obj = RobustObjective(model, log_y, loss=self.loss, delta=self.delta, transform=transform)
            res, n_pruned = self._multistart(obj, phi0, lower, upper)
        finite = np.isfinite(res.fun)
        if not finite.any():
            raise FitError(f"{self.name}: every start gave a non-finite objective; check the data's scale")
        best = int(np.nanargmin(np.where(finite, res.fun, np.inf)))
        fbest = float(res.fun[best])
        self._set_params(transform.to_theta(res.x[best]))
        self.objective_ = fbest
        self.n_points_ = int(y.size)
        self.converged_ = bool(res.converged[best])
        near = finite & (res.fun <= fbest * (1 + 1e-6) + 1e-300)
        self.fit_info_ = {
            "n_starts": int(len(phi0)),
            "n_pruned": int(n_pruned),
            "n_at_best": int(near.sum()),
            "start_spread": self._spread(transform, res, finite, fbest),
            "free": [self.param_names()[g[0]] if len(g) == 1 else "=".join(self.param_names()[i] for i in g)
                     for g in groups],
            "loss": self.loss,
            "delta": self.delta,
        }
        self.residuals_ = log_y - self._log_predict(self.theta_[None, :], X)[0]
        self.data_range_ = {c: [float(X[c].min()), float(X[c].max())] for c in self.inputs}
        self._warn_after_fit(transform, lower, upper, res.x[best])
        check_residuals(self.name, X, self.residuals_)
        self._check_terms(X, y)
        self.bootstrap_theta_ = None
        if self.bootstrap and n_free:
            weights = None
            if self.bootstrap_groups and self.bootstrap_groups in df.columns:
                codes, uniq = pd.factorize(df[self.bootstrap_groups])
                weights = resample_weights(len(uniq), int(self.bootstrap), self.seed)[:, codes]
            with limit_threads(1), np.errstate(all="ignore"):
                boot = bootstrap_fit(model, log_y, res.x[best], n_boot=int(self.bootstrap), seed=self.seed,
                                     loss=self.loss, delta=self.delta, transform=transform, lower=lower, upper=upper,
                                     weights=weights)
            # a refit that stopped at the iteration limit still improved on its start (the full-data
            # optimum); dropping it would hide exactly the resamples that wander along flat directions
            ok = np.isfinite(boot.fun)
            if (~boot.converged).mean() > 0.05:
                warnings.warn(f"{self.name}: {int((~boot.converged).sum())} of {ok.size} bootstrap refits drifted "
                              "without converging (a flat direction in the fit); intervals include them",
                              ScalingWarning, stacklevel=2)
            if ok.mean() < 0.95:
                warnings.warn(f"{self.name}: {int((~ok).sum())} of {ok.size} bootstrap refits failed; "
                              "intervals use the rest", ScalingWarning, stacklevel=2)
            self.bootstrap_theta_ = transform.to_theta(boot.x[ok])
        self._set_uncertainty()
        check_identification(self.name, self.params_, self.ci_, self.level, self.fixed)
        check_floor(self.name, self.params_, float(np.min(y)), self.fixed)
        return self

    #: multi-start pruning: after `PRUNE_AFTER` steps keep starts within `PRUNE_FACTOR` of the best
    #: objective so far, and at least the best `PRUNE_KEEP` fraction of them
    PRUNE_AFTER, PRUNE_FACTOR, PRUNE_KEEP = 6, 5.0, 0.03

    def _multistart(self, obj: RobustObjective, phi0: np.ndarray, lower, upper):
        """Run every start; with ``prune``, starts far behind the best after a few steps stop there."""
        if not self.prune or len(phi0) < 200:
            return newton_lm(obj, phi0, lower=lower, upper=upper, ftol=1e-12), 0
        warm = newton_lm(obj, phi0, lower=lower, upper=upper, max_iter=self.PRUNE_AFTER, ftol=1e-12)
        f = np.where(np.isfinite(warm.fun), warm.fun, np.inf)
        rank = np.argsort(np.argsort(f, kind="stable"), kind="stable")
        keep = np.isfinite(f) & ((f <= self.PRUNE_FACTOR * f.min()) | (rank < self.PRUNE_KEEP * len(f))
                                 | warm.converged)
        rest = newton_lm(obj, warm.x[keep & ~warm.converged], lower=lower, upper=upper, ftol=1e-12)
        done = keep & warm.converged
        return BatchResult(x=np.vstack([warm.x[done], rest.x]), fun=np.concatenate([warm.fun[done], rest.fun]),
                           converged=np.concatenate([warm.converged[done], rest.converged]),
                           n_iter=np.zeros(int(done.sum()) + len(rest.x), int)), int((~keep).sum())

    def _spread(self, transform, res, finite, fbest) -> float:
        """Largest relative parameter difference among starts within 1e-4 of the best objective.

        Log-scale parameters compare by their logs (a difference of 0.1 is ~10%).
        """
        near = finite & (res.fun <= fbest * (1 + 1e-4) + 1e-300)
        T = transform.to_theta(res.x[near])
        d = np.abs(T - self.theta_)
        for i, p in enumerate(self.parameters):
            if not p.log:
                d[:, i] /= max(abs(self.theta_[i]), 1e-3)
        return float(min(d.max(), 1e3)) if d.size else 0.0

    def _warn_after_fit(self, transform, lower, upper, phi) -> None:
        names = self.fit_info_["free"]
        at = [names[k] for k in range(len(phi)) if (np.isfinite(lower[k]) and phi[k] - lower[k] < 1e-6)
              or (np.isfinite(upper[k]) and upper[k] - phi[k] < 1e-6)]
        self.fit_info_["at_bound"] = at
        default = {p.name: (p.lower, p.upper) for p in self.parameters}
        mine = [n for n in at if any(m in self.bounds or (self.params is not None and m in self.params)
                                     for m in n.split("="))]
        if mine:
            warnings.warn(f"{self.name}: parameter(s) {mine} ended on a bound; the optimum lies outside the "
                          "bounds you set: widen them or fix the parameter", ScalingWarning, stacklevel=3)
        for n in at:
            if n in mine:
                continue
            first = n.split("=")[0]
            lo, hi = default.get(first, (None, None))
            side = lo if lo is not None else hi
            warnings.warn(self._default_bound_message(n, side), ScalingWarning, stacklevel=3)
        if not self.converged_:
            warnings.warn(f"{self.name}: the best start did not converge within the iteration limit",
                          ScalingWarning, stacklevel=3)
        if self.fit_info_["start_spread"] > 0.05:
            warnings.warn(
                f"{self.name}: starts that reach nearly the same objective disagree by up to "
                f"{_pct(self.fit_info_['start_spread'])} in some parameter: the data pin this law down "
                "weakly (tie the exponents, fix E, or add runs over a wider range)", ScalingWarning, stacklevel=3)
        r = self.residuals_
        if r.size >= 10:
            bits = np.abs(np.abs(r) - abs(math.log(math.log(2)))) < 0.03
            if bits.mean() > 0.1:
                warnings.warn(f"{self.name}: {int(bits.sum())} runs sit a factor ln 2 off the fit: some losses "
                              "look like bits and others nats; convert all to nats", ScalingWarning, stacklevel=3)

    def _default_bound_message(self, name: str, value) -> str:
        return (f"{self.name}: {name} ended on its default bound ({value:g}): the data do not show the "
                f"scaling this law assumes (loss should fall as its inputs grow; check the column mapping, "
                f"e.g. that N is the parameter count and D the tokens). Lift the bound with "
                f"--bound {name.split('=')[0]}=-inf:inf (Python: bounds={{'{name.split('=')[0]}': (None, None)}})")

    def _set_uncertainty(self, warn: bool = True) -> None:
        names = self.param_names()
        B = self.bootstrap_theta_
        if B is None or len(B) < 2:
            self.stderr_ = {n: None for n in names}
            self.ci_ = {n: None for n in names}
            self.covariance_ = None
            return
        P = self._to_public(B)
        self.stderr_ = dict(zip(names, map(float, P.std(axis=0, ddof=1))))
        lo, hi = percentile_interval(P, self.level)
        self.ci_ = {n: [float(a), float(b)] for n, a, b in zip(names, lo, hi)}
        self.covariance_ = pd.DataFrame(np.cov(P, rowvar=False), index=names, columns=names)
        free = self._free_names()
        widened = []
        for n in names:
            if free is not None and n not in free:  # fixed, or not estimable from these data: no interval
                self.stderr_[n] = None
                self.ci_[n] = None
                continue
            v, (a, b) = self.params_[n], self.ci_[n]
            if not a <= v <= b:
                # the resamples all moved one way from the estimate (a flat direction, a parameter heading
                # to a boundary): an interval that excludes the estimate would contradict it
                self.ci_[n] = [min(a, v), max(b, v)]
                widened.append(n)
        if widened and hasattr(self, "fit_info_"):
            self.fit_info_["ci_widened"] = widened
            if warn:
                warnings.warn(
                    f"{self.name}: the bootstrap resamples of {widened} all moved away from the estimate (a flat "
                    "direction, or a parameter heading to a boundary, such as E -> 0 when the data show no floor): "
                    "not identified by these data, so the interval is widened to include the estimate (fix the "
                    "parameter, or add runs that pin it down)", ScalingWarning, stacklevel=3)

    def _free_names(self) -> set[str] | None:
        """Names of the parameters the fit estimated (None when not known, e.g. published values)."""
        free = getattr(self, "fit_info_", {}).get("free")
        return None if free is None else {m for n in free for m in n.split("=")}

    # ---------------------------------------------------------------- predict
    def predict(self, data=None, **inputs) -> np.ndarray:
        """Predicted loss at the given inputs (a DataFrame, a mapping, or keyword arrays)."""
        self._require_fitted()
        X = self._inputs_from(data, **inputs)
        check_extrapolation(self.name, X, getattr(self, "data_range_", None))
        return np.exp(self._log_predict(self.theta_[None, :], X)[0])

    def predict_interval(self, data=None, *, level: float | None = None, kind: str = "prediction",
                         **inputs) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap interval for the loss at the inputs.

        ``kind="prediction"`` (default) covers a *new run*: each bootstrap curve plus
        a residual drawn from the fit, so run-to-run scatter is included.
        ``kind="mean"`` covers the law's curve itself.
        """
        self._require_bootstrap()
        level = self.level if level is None else level
        X = self._inputs_from(data, **inputs)
        logp = self._log_predict(self.bootstrap_theta_, X)  # (B, m)
        if kind == "prediction":
            rng = np.random.default_rng(self.seed + 1)
            r = self.residuals_ - np.median(self.residuals_)
            logp = logp + rng.choice(r, size=logp.shape, replace=True)
        elif kind != "mean":
            raise SettingsError(f"kind must be 'prediction' or 'mean', got {kind!r}")
        lo, hi = percentile_interval(logp, level)
        return np.exp(lo), np.exp(hi)

    def bootstrap_params(self) -> pd.DataFrame:
        """One row of public parameters per bootstrap resample."""
        self._require_bootstrap()
        return pd.DataFrame(self._to_public(self.bootstrap_theta_), columns=self.param_names())

    # ------------------------------------------------------------ allocation
    #: what an allocation must be told besides C (``("U",)``: unique tokens for the data-constrained law)
    allocation_conditions: ClassVar[tuple[str, ...]] = ()
    #: what it may be told (e.g. ``flops``, the FLOP model)
    allocation_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def allocates(cls) -> bool:
        """Whether this law gives a compute-optimal allocation (a capability, not a name to test)."""
        return cls._allocate is not Law._allocate

    def _allocate(self, theta: np.ndarray, C: np.ndarray, strict: bool, **conditions) -> dict[str, np.ndarray]:
        """(K, m) arrays ``N_opt``, ``D_opt``, ``loss`` (and any extra column) for K internal parameter
        vectors and m budgets. ``strict``: the point estimate (raise on a degenerate law) rather than
        bootstrap samples (give the limit or NaN)."""
        raise UnsupportedError(f"{self.name} has no compute-optimal allocation")

    def _allocation_exponents(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Exponents of the allocation (``a``, ``b``, ...) for K parameter vectors; empty when they depend on C."""
        return {}

    def compute_optimal(self, C, *, level: float | None = None, interval: bool = True, **conditions) -> pd.DataFrame:
        """The loss-minimising allocation of each compute budget ``C``: one row per budget.

        Columns ``C``, ``N_opt``, ``D_opt``, ``tokens_per_param``, ``loss`` (and the allocation
        exponents where they are constants), plus ``<column>_lo`` / ``<column>_hi`` percentile
        intervals at ``level`` when the fit has a bootstrap (``interval=False`` skips them).
        ``conditions`` are what the law needs (``allocation_conditions``) or may take
        (``allocation_options``), e.g. ``U=`` unique tokens, ``flops=`` the FLOP model.
        """
        self._require_fitted()
        if not self.allocates():
            raise UnsupportedError(f"{self.name} has no compute-optimal allocation")
        C = np.atleast_1d(np.asarray(C, float))
        if C.ndim != 1 or np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise DataError(f"compute budgets must be finite and positive, got {C[~(np.isfinite(C) & (C > 0))][:3]}")
        missing = [c for c in self.allocation_conditions if conditions.get(c) is None]
        if missing:
            raise SettingsError(f"a {self.name} fit allocates compute given {missing} (the CLI's "
                                + " ".join(f"--{m} VALUE" for m in missing) + ")")
        unknown = [k for k in conditions if k not in self.allocation_conditions + self.allocation_options]
        if unknown:
            allowed = list(self.allocation_conditions + self.allocation_options)
            raise SettingsError(f"{self.name}.compute_optimal takes {allowed or 'no options'}, not {unknown}")
        level = self.level if level is None else level
        point = self._allocate(self.theta_[None, :], C, True, **conditions)
        df = pd.DataFrame({"C": C, **{k: np.asarray(v, float)[0] for k, v in point.items()}})
        df.insert(3, "tokens_per_param", df["D_opt"] / df["N_opt"])
        self._check_allocation_range(C, df["N_opt"].to_numpy(), df["D_opt"].to_numpy())
        for k, v in self._allocation_exponents(self.theta_[None, :]).items():
            df[k] = float(np.asarray(v).reshape(-1)[0])
        boot = getattr(self, "bootstrap_theta_", None)
        if interval and boot is not None and len(boot) > 1 and self._interval_allocatable(**conditions):
            with np.errstate(all="ignore"):
                samples = self._allocate(boot, C, False, **conditions)
            samples["tokens_per_param"] = samples["D_opt"] / samples["N_opt"]
            for k in [c for c in df.columns if c in samples]:
                lo, hi = percentile_interval(np.asarray(samples[k], float), level)
                df[f"{k}_lo"], df[f"{k}_hi"] = lo, hi
            df.attrs["level"] = level
        return df

    def _interval_allocatable(self, **conditions) -> bool:
        return True

    def allocation_exponent_intervals(self, level: float | None = None) -> dict[str, list[float]]:
        """Percentile intervals of the allocation exponents over the bootstrap (empty without one)."""
        boot = getattr(self, "bootstrap_theta_", None)
        if boot is None or len(boot) < 2:
            return {}
        level = self.level if level is None else level
        with np.errstate(all="ignore"):
            ex = self._allocation_exponents(boot)
        return {k: [float(x) for x in percentile_interval(np.asarray(v, float).reshape(-1), level)]
                for k, v in ex.items()}

    def _check_allocation_range(self, C, N, D) -> list[str]:
        """Warn when an allocation lands far outside the sizes and tokens (or budgets) the fit saw."""
        C = np.atleast_1d(C)
        what = f"the allocation for C={C.max():.3g} FLOPs puts"
        return check_extrapolation(self.name, {"C": C, "N": N, "D": D}, getattr(self, "data_range_", None), what)

    # ----------------------------------------------------------------- report
    def summary(self) -> dict[str, Any]:
        """Plain-Python (JSON-safe) summary; the CLI's ``--json`` output."""
        self._require_fitted()
        out = {
            "law": self.name,
            "params": dict(self.params_),
            "stderr": dict(getattr(self, "stderr_", {n: None for n in self.params_})),
            "ci": dict(getattr(self, "ci_", {n: None for n in self.params_})),
            "level": self.level,
            "objective": getattr(self, "objective_", None),
            "n_points": getattr(self, "n_points_", None),
            "converged": getattr(self, "converged_", None),
        }
        extra = self._summary_extra()
        out.update(extra)
        if hasattr(self, "fit_info_"):
            out["fit_info"] = self.fit_info_
        return out

    def _summary_extra(self) -> dict[str, Any]:
        return {}

    def report(self) -> str:
        """A readable table of the fit."""
        self._require_fitted()
        pct = int(round(100 * self.level))
        lines = [f"{type(self).__name__} ({self.name}): {self.formula}"]
        if hasattr(self, "n_points_"):
            fi = getattr(self, "fit_info_", {})
            loss = fi.get("loss", self.loss)
            lines.append(f"fitted on {self.n_points_} {fi.get('unit', 'runs')}, {loss} loss"
                         + (f" (delta={fi.get('delta', self.delta):g})" if loss == "huber" else "")
                         + f"; objective {self.objective_:.6g}; converged: {'yes' if self.converged_ else 'NO'}")
            if fi.get("procedure"):
                lines.append(f"procedure: {fi['procedure']}")
            if fi.get("n_starts", 1) > 1:
                lines.append(f"starts: {fi['n_starts']} ({fi['n_pruned']} pruned early), {fi['n_at_best']} reached "
                             f"the best objective; spread near the best {100 * fi['start_spread']:.2g}%")
            boot = getattr(self, "bootstrap_theta_", None)
            nb = 0 if boot is None else len(boot)
            over = fi.get("bootstrap_over", "runs")
            lines.append(f"uncertainty: {nb} bootstrap resamples over {over}" if nb else "uncertainty: none (bootstrap=0)")
        lines.append("")
        lines.append(f"  {'param':<10}{'value':>14}{'stderr':>12}{f'{pct}% CI':>30}")
        for n in self.param_names():
            v = self.params_[n]
            se = getattr(self, "stderr_", {}).get(n)
            ci = getattr(self, "ci_", {}).get(n)
            fi = getattr(self, "fit_info_", {})
            free = self._free_names()
            fixed = (" (fixed)" if n in self.fixed else
                     " (not estimated)" if free is not None and n not in free else
                     " (on a bound)" if any(n in b.split("=") for b in fi.get("at_bound", ())) else
                     " (not identified: the resamples all moved away from the estimate)"
                     if n in fi.get("ci_widened", ()) else "")
            se_s = f"{se:12.4g}" if se is not None else f"{'-':>12}"
            ci_s = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci is not None else "-"
            lines.append(f"  {n:<10}{v:14.6g}{se_s}{ci_s:>30}{fixed}")
        lines.extend(self._report_extra())
        return "\n".join(lines)

    def _report_extra(self) -> list[str]:
        return []

    def __repr__(self) -> str:
        if self.is_fitted:
            inner = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"{type(self).__name__}({inner})"
        return f"{type(self).__name__}(unfitted)"

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict again, as plain JSON-safe Python."""
        d = self.summary()
        d["settings"] = {"loss": self.loss, "delta": self.delta, "fixed": self.fixed,
                         "bounds": {k: list(v) for k, v in self.bounds.items()}, "tie": [list(t) for t in self.tie],
                         "bootstrap": self.bootstrap, "seed": self.seed, "level": self.level}
        if getattr(self, "bootstrap_theta_", None) is not None:
            d["bootstrap"] = {
                "params": np.round(self._to_public(self.bootstrap_theta_), 12).tolist(),
                "residuals": np.round(self.residuals_, 12).tolist(),
            }
        if hasattr(self, "data_range_"):
            d["data_range"] = self.data_range_
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "this fit") -> FitResult:
        """The ``FitResult`` a ``to_dict`` (or a fit file of any earlier version) describes."""
        from . import available_laws, get_law

        if not isinstance(d, Mapping) or not isinstance(d.get("law"), str):
            raise DataError(f"{source} is not a fit (no law name under 'law')")
        if d["law"] not in available_laws():
            raise DataError(f"{source}: unknown law {d['law']!r}; this package fits {', '.join(available_laws())}")
        law_cls = get_law(d["law"]) if cls is Law else cls
        if law_cls.name != d["law"]:
            raise DataError(f"{source} is a {d['law']} fit, not {law_cls.name}")
        law_cls = law_cls._class_for(d)
        law_cls._validate_dict(d, source)
        s = dict(d.get("settings", {}))
        law = law_cls(loss=s.get("loss", "huber"), delta=s.get("delta", 1e-3), fixed=s.get("fixed"),
                      bounds={k: tuple(v) for k, v in (s.get("bounds") or {}).items()},
                      tie=s.get("tie"), bootstrap=s.get("bootstrap", 0), seed=s.get("seed", 0),
                      level=d.get("level", s.get("level", 0.9)))
        law._set_params(law_cls._to_internal(d["params"]), d["params"])
        for key, attr in (("objective", "objective_"), ("n_points", "n_points_"), ("converged", "converged_"),
                          ("fit_info", "fit_info_"), ("data_range", "data_range_")):
            if d.get(key) is not None:
                setattr(law, attr, d[key])
        boot = d.get("bootstrap")
        if boot:
            P = np.asarray(boot["params"], float)
            theta = P.copy()
            for i, p in enumerate(law_cls.parameters):
                if p.log:
                    with np.errstate(divide="ignore"):  # a resample at E = 0 stays at log 0 = -inf
                        theta[:, i] = np.log(P[:, i])
            law.bootstrap_theta_ = theta
            law.residuals_ = np.asarray(boot["residuals"], float)
        else:
            law.bootstrap_theta_ = None
        law._set_uncertainty(warn=False)
        law._restore_extra(d)
        return FitResult(law._spec(), law)

    def _restore_extra(self, d: Mapping[str, Any]) -> None:
        """Subclasses restore what their ``to_dict`` added."""

    @classmethod
    def _class_for(cls, d: Mapping[str, Any]) -> type:
        """The class that restores this fit (a law with variants of its own parameters overrides it)."""
        return cls

    @classmethod
    def _validate_dict(cls, d: Mapping[str, Any], source: str) -> None:
        """Name what is wrong with a fit read from a file (edited by hand, truncated, another version)."""
        where = f"{source} ({cls.name})"
        params = d.get("params")
        if not isinstance(params, Mapping):
            raise DataError(f"{where} has no 'params' mapping")
        names = cls.param_names()
        missing = [n for n in names if n not in params]
        unknown = [n for n in params if n not in names]
        if missing or unknown:
            raise DataError(f"{where}: parameters must be exactly {names}; "
                            + "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                    f"unknown {unknown}" if unknown else "") if x))
        settings = d.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise DataError(f"{where}: 'settings' must be a mapping")
        fixed = settings.get("fixed") or {}
        user_bounds = settings.get("bounds") or {}
        for p in cls.parameters:
            v = params[p.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DataError(f"{where}: parameter {p.name} is {v!r}, not a finite number")
            if p.log and v <= 0:
                raise DataError(f"{where}: parameter {p.name} must be positive, got {v}")
            lo, hi = user_bounds.get(p.name, (p.lower, p.upper)) if p.name not in fixed else (None, None)
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise DataError(f"{where}: parameter {p.name} = {v} lies outside its bounds [{lo}, {hi}]; "
                                "was the file edited? Refit, or fit with those bounds (--bound)")
        rng = d.get("data_range")
        if rng is not None:
            ok = isinstance(rng, Mapping) and all(
                isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                     and math.isfinite(x) for x in v) and v[0] <= v[1]
                for v in rng.values())
            if not ok:
                raise DataError(f"{where}: 'data_range' must map each input to [low, high] numbers; refit, or delete it")
        boot = d.get("bootstrap")
        if boot:
            try:
                P = np.asarray(boot["params"], float)
                r = np.asarray(boot["residuals"], float)
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: the bootstrap section is damaged (needs numeric 'params' and "
                                "'residuals'); refit, or delete the section to keep the point fit only") from None
            if P.ndim != 2 or P.shape[0] < 2 or P.shape[1] != len(names) or not np.isfinite(P).all() or r.ndim != 1:
                raise DataError(f"{where}: the bootstrap section does not match the law's {len(names)} parameters; "
                                "refit, or delete the section to keep the point fit only")
            vals = np.array([params[n] for n in names], float)
            out = [n for n, v, lo, hi in zip(names, vals, P.min(axis=0), P.max(axis=0))
                   if len(P) >= 20 and not lo - 1e-9 * abs(lo) <= v <= hi + 1e-9 * abs(hi)]
            if out:
                warnings.warn(f"{where}: parameter(s) {out} lie outside every one of the {len(P)} bootstrap "
                              "resamples stored with them, so the intervals do not describe them (was the file "
                              "edited?); refit, or delete the bootstrap section", ScalingWarning, stacklevel=3)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @staticmethod
    def load(path: str | Path) -> FitResult:
        from ..data import read_json_file

        d = read_json_file(path, "fit file")
        if not isinstance(d, dict) or "law" not in d or "params" not in d:
            raise DataError(f"{path} is not a fit file written by `scaling fit --out` (no 'law'/'params')")
        return Law.from_dict(d, source=str(path))
