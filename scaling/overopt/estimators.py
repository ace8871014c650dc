"""Best-of-n estimators and KL bookkeeping (numpy only; no torch, no fitting).

* ``bon_weights(N, n)``: the probability that best-of-n, drawn from N samples
  without replacement, picks the sample of rank i (ascending): C(i-1, n-1)/C(N, n),
  computed in log space so n and N in the thousands do not overflow.
* ``bon_curve``: the unbiased best-of-n estimate of the expected gold (and proxy)
  score for every n at once, from one set of N >= n samples per prompt.
* ``bon_kl_analytic(n) = log n - (n-1)/n``: the KL of best-of-n from the base
  policy when no two outcomes tie; an upper bound otherwise (Beirami et al. 2024).
* ``bon_kl_empirical``: the KL of best-of-n over the empirical distribution of
  the N samples (the exact discrete formula applied to them), reported beside it.
* ``bon_kl_exact``: exact KL of best-of-n for a discrete policy (probabilities
  and rewards of every outcome), ties included.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from ..errors import SettingsError


def bon_weights(N: int, n: int) -> np.ndarray:
    """Weights over ascending ranks 1..N for best-of-n: C(i-1, n-1) / C(N, n); zero below rank n."""
    if not 1 <= n <= N:
        raise SettingsError(f"best-of-n needs 1 <= n <= N samples, got n={n}, N={N}")
    i = np.arange(1, N + 1)
    w = np.zeros(N)
    ok = i >= n
    ii = i[ok]
    logw = (gammaln(ii) - gammaln(n) - gammaln(ii - n + 1)) - (gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1))
    w[ok] = np.exp(logw)
    return w


def _tie_averaged(score: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Values with samples of equal score replaced by their mean (best-of-n picks among ties at random)."""
    _, inv = np.unique(score, return_inverse=True)
    sums = np.bincount(inv, weights=value)
    return (sums / np.bincount(inv))[inv]


def bon_curve(proxy: np.ndarray, gold: np.ndarray, ns) -> dict[str, np.ndarray]:
    """Unbiased best-of-n estimates of E[gold] and E[proxy] of the chosen sample, for each n in ``ns``.

    ``proxy`` and ``gold`` are (N,) for one prompt or (P, N) for P prompts; the
    result has one row per prompt and one column per n.
    """
    proxy, gold = np.atleast_2d(np.asarray(proxy, float)), np.atleast_2d(np.asarray(gold, float))
    if proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold scores must have the same shape, got {proxy.shape} and {gold.shape}")
    P, N = proxy.shape
    ns = np.asarray(ns, int)
    if ns.min() < 1 or ns.max() > N:
        raise SettingsError(f"n must lie in [1, {N}] (the samples per prompt), got {ns.min()}..{ns.max()}")
    W = np.stack([bon_weights(N, int(n)) for n in ns])  # (len(ns), N)
    g_out, p_out = np.empty((P, len(ns))), np.empty((P, len(ns)))
    for j in range(P):
        order = np.argsort(proxy[j], kind="stable")
        s = proxy[j][order]
        g = _tie_averaged(s, gold[j][order])
        g_out[j] = W @ g
        p_out[j] = W @ s
    return {"gold": g_out, "proxy": p_out}


def bon_kl_analytic(n) -> np.ndarray:
    """log n - (n - 1)/n: exact without ties, an upper bound on the KL of best-of-n otherwise."""
    n = np.asarray(n, float)
    if np.any(n < 1):
        raise SettingsError("n must be >= 1")
    return np.log(n) - (n - 1) / n


def bon_kl_exact(probs: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """Exact KL(best-of-n || base) for a discrete base policy over outcomes with these rewards.

    Best-of-n puts mass F(r)^n - F(r-)^n on the set of outcomes with reward r
    (F the base CDF of the reward), split among them in proportion to their base
    probability, since ties are broken at random.
    """
    p = np.asarray(probs, float)
    r = np.asarray(rewards, float)
    if p.shape != r.shape or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError("probs must be non-negative, sum to 1 and match rewards in shape")
    levels, inv = np.unique(r, return_inverse=True)
    mass = np.bincount(inv, weights=p, minlength=len(levels))
    F = np.cumsum(mass)
    F_lo = F - mass
    bon = F ** n - F_lo ** n
    ok = (mass > 0) & (bon > 0)
    return float(np.sum(bon[ok] * np.log(bon[ok] / mass[ok])))


def bon_kl_empirical(proxy: np.ndarray, n: int) -> float:
    """KL of best-of-n from the empirical distribution of one prompt's N samples.

    Treats the N samples as the base policy (each 1/N) and applies the exact
    discrete formula, so copies of one sequence (which score the same) and ties
    lower the estimate as they lower the true KL; it approaches the analytic
    value from below as N grows.
    """
    s = np.asarray(proxy, float)
    return bon_kl_exact(np.full(s.size, 1.0 / s.size), s, int(n))
