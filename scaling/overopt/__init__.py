"""Reward-model overoptimization sweeps (Gao, Schulman & Hilton 2022), small enough for a CPU.

``run_overopt(yaml)`` trains an initial policy, labels preference pairs with a
gold reward, trains proxy reward models of several sizes (Bradley-Terry), and
measures gold and proxy reward against sqrt(KL) for best-of-n, RL (RLOO with a
KL penalty) and DPO. Fit the results with ``get_law("gao-bon" | "gao-rl")``.

Importing this package does not import torch (the estimators are numpy).
"""

from .estimators import bon_curve, bon_kl_analytic, bon_kl_empirical, bon_kl_exact, bon_weights
from .gold import FeatureGold, get_gold, register_gold
from .spec import OveroptSpecError, load_spec

__all__ = ["bon_curve", "bon_kl_analytic", "bon_kl_empirical", "bon_kl_exact", "bon_weights", "FeatureGold",
           "get_gold", "register_gold", "OveroptSpecError", "load_spec", "run_overopt", "export", "status",
           "final_gold", "fit_samples", "peaks_by_policy"]


def __getattr__(name):
    if name in ("run_overopt", "export", "status"):
        from . import runner

        return getattr(runner, name)
    if name in ("final_gold", "fit_samples", "peaks_by_policy"):  # the RLHF-axes analyses (numpy, no torch)
        from . import axes

        return getattr(axes, name)
    raise AttributeError(name)
