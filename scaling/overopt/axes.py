"""The RLHF axes of an overoptimization sweep (issue 14): policy size and samples per prompt.

Analysis of an export (numpy and pandas only; no torch):

* ``final_gold(export)``: one row per RL run (policy x reward model x KL penalty x samples per prompt x seed)
  at its last checkpoint: the gold reward the run ends with. This is the table the ``rlhf-samples`` law
  (R(k) = R_inf - c k^-gamma, Hou et al. 2024) fits.
* ``fit_samples(export, ...)``: that law fitted to one curve of it (one policy, reward model and KL penalty).
* ``peaks_by_policy(export, ...)``: for each policy at one reward model, the highest mean gold along its
  optimisation (over RL steps, or best-of-n's n), the KL there and ``d = sqrt(KL)``; with the per-prompt export,
  percentile intervals from resampling the held-out prompts (one draw shared by every policy, so the
  comparison between policies is paired). Gao et al. (2022) report that a larger policy peaks at about
  the same KL and gains less from optimisation against a fixed reward model.

The peak here is the best checkpoint seen, not a fitted curve's maximum: it needs no functional form, and the
interval says how much the choice of held-out prompts moves it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import read_table
from ..errors import DataError, SettingsError
from ..fitting.bootstrap import resample_weights

#: the settings that name one run of an optimisation method, beside its points (steps or n)
RUN_KEYS = ("method", "policy", "policy_params", "rm_params", "rm_data", "kl_penalty", "samples_per_prompt", "seed")


def _table(data) -> pd.DataFrame:
    df = read_table(data) if not isinstance(data, pd.DataFrame) else data.copy()
    missing = [c for c in ("method", "gold", "kl") if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}: this takes an overoptimization sweep's export "
                        "(`scaling overopt export NAME`)")
    return df


def _pick(df: pd.DataFrame, chosen: dict, what: str) -> pd.DataFrame:
    """The rows at the chosen values; an axis that still varies and was not chosen is an error naming its values."""
    for col, val in chosen.items():
        if col not in df.columns:
            if val is not None:
                raise DataError(f"the table has no {col!r} column to select {col}={val!r} from")
            continue
        if val is not None:
            vals = df[col]
            hit = vals == val if isinstance(val, str) or vals.dtype == object else np.isclose(
                pd.to_numeric(vals, errors="coerce"), float(val), rtol=1e-9, atol=0)
            if not hit.any():
                raise DataError(f"no {what} rows with {col} = {val!r}; the table has {_values(df[col])}")
            df = df[hit]
        elif df[col].nunique(dropna=True) > 1:
            flag = "--" + col.replace("_", "-")
            raise DataError(f"the {what} rows vary {col} ({_values(df[col])}): choose one ({col}=... in Python, "
                            f"{flag} on the command line)")
    return df


def _values(s: pd.Series) -> list:
    vals = pd.unique(s.dropna())
    try:
        vals = sorted(vals)
    except TypeError:
        pass
    return [v.item() if hasattr(v, "item") else v for v in vals][:8]


def final_gold(data, method: str = "rl") -> pd.DataFrame:
    """One row per run of ``method`` (``rl`` or ``dpo``) at its last checkpoint, with a ``run_id``."""
    df = _table(data)
    if "prompt" in df.columns:
        raise DataError("final_gold takes the summary export (one row per point), not the per-prompt one")
    if method not in ("rl", "dpo"):
        raise SettingsError(f"final_gold: method is 'rl' or 'dpo' (best-of-n has no training steps); got {method!r}")
    df = df[df["method"] == method]
    if df.empty or "step" not in df.columns:
        raise DataError(f"the export has no {method} runs (methods: {_values(_table(data)['method'])})")
    keys = [c for c in RUN_KEYS if c in df.columns]
    last = df.loc[df.groupby(keys, dropna=False)["step"].idxmax()].copy()
    last["run_id"] = last[keys].astype(str).agg("|".join, axis=1)
    front = ["run_id"] + keys + ["step"]
    return last[front + [c for c in last.columns if c not in front]].reset_index(drop=True)


def fit_samples(data, *, policy=None, rm_params=None, rm_data=None, kl_penalty=None, **law_settings):
    """The ``rlhf-samples`` law fitted to gold at the end of RL against samples per prompt, for one policy,
    reward model and KL penalty (each must be chosen when the export has several); seeds are runs of their own."""
    from ..laws import get_law

    table = final_gold(data, "rl")
    if "samples_per_prompt" not in table.columns:
        raise DataError("the export has no samples_per_prompt column: run a sweep with a list of "
                        "rl.samples_per_prompt (e.g. [1, 2, 4, 8, 16] with rl.baseline: batch)")
    table = _pick(table, {"policy": policy, "rm_params": rm_params, "rm_data": rm_data, "kl_penalty": kl_penalty},
                  "RL")
    return get_law("rlhf-samples")(**law_settings).fit(table.drop(columns=["step"]))


def peaks_by_policy(data, *, method: str = "rl", rm_params=None, rm_data=None, kl_penalty=None,
                    samples_per_prompt=None, bootstrap: int = 1000, level: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Per policy: the point of highest mean gold (``step`` or ``n``), ``gold_star``, ``kl_star``, ``d_star``,
    the gold at the last point, and ``peaked`` (False when the highest gold is at the last point: no peak was
    reached, so ``d_star`` is only a lower bound of where it lies); with a per-prompt export (a ``prompt`` column) ``*_lo``/``*_hi`` percentile
    intervals from ``bootstrap`` resamples of the held-out prompts, else NaN. Seeds are averaged."""
    if not 0 < level < 1:
        raise SettingsError(f"level must be in (0, 1), got {level!r}")
    if method not in ("bon", "rl", "dpo"):
        raise SettingsError(f"method is 'bon', 'rl' or 'dpo'; got {method!r}")
    df = _table(data)
    df = df[df["method"] == method]
    if df.empty:
        raise DataError(f"the table has no {method} rows")
    if "policy" not in df.columns:
        raise DataError("the table has no policy column: run a sweep with policy.shapes (several policies)")
    chosen = {"rm_params": rm_params, "rm_data": rm_data, "samples_per_prompt": samples_per_prompt}
    if method != "bon":
        chosen["kl_penalty"] = kl_penalty
    df = _pick(df, chosen, method)
    point = "n" if method == "bon" else "step"
    per_prompt = "prompt" in df.columns
    kl_col = "kl_prompt" if per_prompt and "kl_prompt" in df.columns else "kl"
    cols = ["policy", "policy_params", point] + (["prompt"] if per_prompt else [])
    cell = df.groupby(cols, dropna=False)[["gold", kl_col]].mean().reset_index()  # seeds averaged
    prompts = np.sort(cell["prompt"].unique()) if per_prompt else np.array([0])
    W = resample_weights(len(prompts), bootstrap, seed) if per_prompt and bootstrap else None
    out = []
    for (name, params), c in cell.groupby(["policy", "policy_params"], sort=False):
        if per_prompt:
            G = c.pivot(index=point, columns="prompt", values="gold").reindex(columns=prompts)
            K = c.pivot(index=point, columns="prompt", values=kl_col).reindex(columns=prompts)
            if G.isna().any().any():
                raise DataError(f"policy {name}: some prompts lack some points; the per-prompt table is incomplete")
        else:
            G = c.set_index(point)[["gold"]].sort_index()
            K = c.set_index(point)[[kl_col]].sort_index()
        pts, g, k = G.index.to_numpy(float), G.to_numpy(float), K.to_numpy(float)
        i = int(np.argmax(g.mean(1)))
        kl_star = float(k[i].mean())
        row = {"policy": name, "policy_params": params, f"{point}_star": pts[i], "gold_star": float(g[i].mean()),
               "kl_star": kl_star, "d_star": float(np.sqrt(max(kl_star, 0.0))), "gold_end": float(g[-1].mean()),
               # the highest gold at the last point is no peak: the optimisation stopped before overoptimising
               "peaked": bool(i < len(pts) - 1), "n_prompts": len(prompts) if per_prompt else np.nan}
        for name_ in ("gold_star", "d_star", "kl_star"):
            row[f"{name_}_lo"] = row[f"{name_}_hi"] = np.nan
        if W is not None:
            gb, kb = g @ W.T / len(prompts), k @ W.T / len(prompts)  # (points, B) resampled means
            ib = np.argmax(gb, axis=0)
            cols_b = np.arange(gb.shape[1])
            draws = {"gold_star": gb[ib, cols_b], "kl_star": kb[ib, cols_b]}
            draws["d_star"] = np.sqrt(np.maximum(draws["kl_star"], 0.0))
            for name_, v in draws.items():
                row[f"{name_}_lo"], row[f"{name_}_hi"] = (float(x) for x in np.quantile(v, [(1 - level) / 2,
                                                                                           (1 + level) / 2]))
        out.append(row)
    res = pd.DataFrame(out).sort_values("policy_params", ignore_index=True)
    res.attrs.update(method=method, level=level, bootstrap=int(bootstrap) if W is not None else 0)
    return res


__all__ = ["final_gold", "fit_samples", "peaks_by_policy"]
