"""Warnings that say what is wrong with a fit and what would fix it.

Each check returns the messages it raised (so tests and reports can read them)
and emits each as a :class:`~scaling.errors.ScalingWarning`.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from .errors import ScalingWarning

EXPONENT_NAMES = ("alpha", "beta", "a", "b")

#: predictions further than this factor outside the fitted range get a warning
EXTRAPOLATION_FACTOR = 100.0


def _warn(messages: list[str], stacklevel: int = 4) -> list[str]:
    for m in messages:
        warnings.warn(m, ScalingWarning, stacklevel=stacklevel)
    return messages


def check_thin_data(name: str, X: Mapping[str, np.ndarray], n_free: int) -> list[str]:
    out = []
    n = len(next(iter(X.values())))
    for c, v in X.items():
        k = np.unique(v).size
        if 1 < k < 3:
            out.append(f"{name}: only {k} distinct {c}; a power law in {c} with an offset needs at least 3 "
                       f"(add runs at more {c}, or fix E / tie the exponents)")
    if n < 2 * n_free:
        out.append(f"{name}: {n} runs for {n_free} free parameters is thin; expect wide intervals "
                   "(add runs, or fix/tie parameters)")
    return _warn(out)


def check_identification(name: str, params: Mapping[str, float], ci: Mapping, level: float,
                         fixed: Mapping | None = None) -> list[str]:
    out = []
    for k, v in params.items():
        if (fixed and k in fixed) or ci.get(k) is None:
            continue
        if not (k in EXPONENT_NAMES or k.startswith(("alpha", "beta", "R_"))):
            continue
        lo, hi = ci[k]
        if hi - lo > abs(v):
            out.append(f"{name}: the {int(round(100 * level))}% interval of {k} [{lo:.3g}, {hi:.3g}] is wider than "
                       f"its value {v:.3g}: weakly identified by these data (add runs over a wider range, or fix or tie "
                       "parameters, e.g. tie the exponents or fix E)")
    return _warn(out)


def check_floor(name: str, params: Mapping[str, float], min_loss: float, fixed: Mapping | None = None) -> list[str]:
    """The irreducible loss E driven to ~0: the data show no floor, so E (and what depends on it) is not identified."""
    E = params.get("E")
    if E is None or (fixed and "E" in fixed) or not np.isfinite(min_loss) or E >= 1e-3 * min_loss:
        return []
    return _warn([f"{name}: E = {E:.2g} is driven to 0 (the lowest loss is {min_loss:.3g}): these data show no floor, "
                  "so E is not identified and its interval means nothing; the other parameters absorb it (fix E, "
                  "e.g. --fix E=..., or add runs that approach the floor)"])


def check_residuals(name: str, X: Mapping[str, np.ndarray], residuals: np.ndarray) -> list[str]:
    """Residuals far above the scatter of repeated runs, or trending with an input."""
    r = np.asarray(residuals, float)
    n = r.size
    out = []
    if n < 10:
        return out
    scale = 1.4826 * np.median(np.abs(r - np.median(r)))
    keys = np.stack([X[c] for c in X], axis=1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    sizes = np.bincount(group)
    if (sizes >= 2).sum() >= 3:
        means = np.bincount(group, weights=r) / sizes
        within = r - means[group]
        dof = int((sizes - 1).sum())
        s_rep = float(np.sqrt((within**2).sum() / dof)) if dof else 0.0
        if s_rep > 0 and scale > 3 * s_rep:
            out.append(f"{name}: residuals ({100 * scale:.2g}% typical) are {scale / s_rep:.1f}x the scatter between "
                       f"repeated runs ({100 * s_rep:.2g}%): this form misses structure in the data (try another law, "
                       "or check for off-optimum or mis-configured runs)")
            return _warn(out)
    for c, v in X.items():
        if np.unique(v).size < 5 or np.any(v <= 0):  # an input that can be zero (an area): no log scale
            continue
        order = np.argsort(np.log(v), kind="stable")
        rs = r[order]
        w = max(5, (n // 8) | 1)
        pad = np.pad(rs, w // 2, mode="edge")
        smooth = np.array([np.median(pad[i:i + w]) for i in range(n)])
        trend, noise = float(np.std(smooth)), float(np.std(rs - smooth))
        if noise > 0 and trend > 1.5 * noise and trend > 0.005:
            out.append(f"{name}: residuals trend with {c} (systematic {100 * trend:.2g}% vs noise {100 * noise:.2g}%): "
                       f"the form does not fit these data across {c} (try another law, e.g. free exponents, "
                       "or a restricted range)")
            break
    if not out:
        return check_profile_structure(name, X, r)
    return _warn(out)


def _times(x: float) -> str:
    """A ratio for a message: 150x, 12,000x, 3.2e+45x (never a 300-digit number)."""
    return f"{x:,.0f}x" if x < 1e6 else f"{x:.2g}x"


#: a profile check fires when within-profile curvature of the residuals is this unlikely under noise
PROFILE_P_VALUE = 1e-4
#: ... and the systematic part is at least this large (relative error of the loss)
PROFILE_MIN_EFFECT = 0.002


def _profiles(X: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Ways to cut the points into profiles: (description, group label, position along the profile).

    With N and D: IsoFLOP profiles (equal N*D within 10%, ordered by N), and each model size
    trained to several D (ordered by D), and each D over several N.
    """
    out = []
    if "N" in X and "D" in X:
        lN, lD = np.log(X["N"]), np.log(X["D"])
        lC = lN + lD
        order = np.argsort(lC, kind="stable")
        label = np.empty(lC.size, int)
        label[order] = np.concatenate([[0], np.cumsum(np.diff(lC[order]) > np.log(1.1))])
        out.append(("along each compute budget's IsoFLOP profile (in N)", label, lN))
        out.append(("along each model size's tokens (in D)", np.unique(lN, return_inverse=True)[1].ravel(), lD))
        out.append(("along each token count's sizes (in N)", np.unique(lD, return_inverse=True)[1].ravel(), lN))
    return out


def check_profile_structure(name: str, X: Mapping[str, np.ndarray], residuals: np.ndarray) -> list[str]:
    """Residuals that curve systematically along profiles: the form misses the data, no replicates needed.

    Within every profile with at least 5 points the residuals are regressed on a line and a
    parabola in the log of the profile's variable; under a right form with independent noise
    that explains a chi-squared share of the scatter, tested with an F statistic pooled over
    profiles. Fires when p < PROFILE_P_VALUE and the explained part is at least
    PROFILE_MIN_EFFECT (0.2%) in RMS.
    """
    from scipy.special import fdtrc

    r = np.asarray(residuals, float)
    for what, label, x in _profiles(X):
        ss_exp = ss_res = 0.0
        df_exp = df_res = 0
        n_prof = 0
        bends = []
        for g in np.unique(label):
            m = label == g
            if m.sum() < 5 or np.unique(x[m]).size < 5:
                continue
            xg = x[m] - x[m].mean()
            rg = r[m] - r[m].mean()
            A = np.stack([xg, xg**2 - (xg**2).mean()], axis=1)
            coef, *_ = np.linalg.lstsq(A, rg, rcond=None)
            fitted = A @ coef
            bends.append(coef[1])
            ss_exp += float(fitted @ fitted)
            ss_res += float(((rg - fitted) ** 2).sum())
            df_exp += 2
            df_res += int(m.sum()) - 3
            n_prof += 1
        if n_prof < 2 or df_res < 4 or ss_res <= 0:
            continue
        F = (ss_exp / df_exp) / (ss_res / df_res)
        p = float(fdtrc(df_exp, df_res, F))
        effect = float(np.sqrt(ss_exp / (df_res + 3 * n_prof)))  # RMS of the systematic part per point
        if p < PROFILE_P_VALUE and effect >= PROFILE_MIN_EFFECT:
            up = int((np.array(bends) > 0).sum())
            shape = (f"; in {up} of {n_prof} the data bend up more than the law (profiles more curved than its form)"
                     if up > n_prof / 2 else
                     f"; in {n_prof - up} of {n_prof} the data bend less than the law (flatter than its form)")
            out = [f"{name}: residuals curve systematically {what} ({n_prof} profiles, {100 * effect:.2g}% "
                   f"systematic, p = {p:.1g}{shape}): this form misses the shape of the data even without "
                   "replicate runs to compare with (try another law, check for off-optimum runs, or fit a narrower "
                   "range)"]
            return _warn(out)
    return []


def check_extrapolation(name: str, X: Mapping[str, np.ndarray], data_range: Mapping | None,
                        what: str = "predicting at") -> list[str]:
    """Warn when inputs lie more than EXTRAPOLATION_FACTOR outside the fitted range.

    ``what`` names the act (``"predicting at"``, or e.g. ``"the allocation for C=1e30 puts"``).
    """
    if not data_range:
        return []
    out = []
    for c, (lo, hi) in data_range.items():
        if c not in X:
            continue
        v = np.asarray(X[c], float)
        if hi <= 0 or lo <= 0 or v.min() <= 0:
            continue  # a quantity that can be zero (an area, a count): no ratio to speak of
        big, small = v.max() / hi, lo / v.min()
        if big > EXTRAPOLATION_FACTOR:
            out.append(f"{name}: {what} {c}={v.max():.3g}, {_times(big)} beyond the largest {c} fitted ({hi:.3g}); "
                       "the law is untested there and its interval grows: treat the number with care")
        elif small > EXTRAPOLATION_FACTOR:
            out.append(f"{name}: {what} {c}={v.min():.3g}, {_times(small)} below the smallest {c} fitted ({lo:.3g})")
    return _warn(out)


def at_chance(accuracy, n_pairs):
    """True where a pairwise accuracy on ``n_pairs`` held-out pairs does not beat 50%.

    One-sided binomial test at about 2.3 standard errors (p ~ 0.01); the reward
    models that fail it are scoring noise.
    """
    acc = np.asarray(accuracy, float)
    n = np.maximum(np.asarray(n_pairs, float), 1.0)
    return acc - 0.5 <= 2.33 * np.sqrt(0.25 / n)
