"""Learning-rate schedules and the schedule "areas" a loss-curve law needs.

Shared by the trainer (which follows a schedule) and the curve law (which
predicts a loss curve from one), so neither imports the other.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SettingsError


def steps_of(value: float, steps: int) -> int:
    """A cadence or length given as a fraction of the run (< 1) or as a number of steps, in steps (>= 1)."""
    return max(1, int(value * steps) if value < 1 else int(value))


#: shapes of a WSD cooldown: how the learning rate falls from the peak to final_lr_frac x peak over the cooldown
#: (p runs from 1/cooldown_steps to 1): linear, or 1-sqrt (Hägele et al. 2024), which stays higher for longer
COOLDOWN_SHAPES = ("linear", "1-sqrt")


def cooldown_fraction(sched: dict) -> float:
    """The share of a WSD run spent cooling down: ``cooldown``, else ``decay_frac`` (0.2)."""
    c = sched.get("cooldown")
    return float(sched.get("decay_frac", 0.2) if c is None else c)


def cooldown_start(steps: int, sched: dict) -> int:
    """The step (0-based) at which a WSD run of ``steps`` steps starts its cooldown: ``steps - round(cooldown *
    steps)``, with at least one cooldown step. A cooldown branch starts from the stable run's state there."""
    return steps - max(1, int(round(cooldown_fraction(sched) * steps)))


def warmup_steps(steps: int, sched: dict) -> int:
    """Warmup in steps: ``warmup_steps`` when given (a branched WSD run's, shared by its stable run), else
    ``warmup`` as a fraction of ``steps`` (< 1) or as steps."""
    if sched.get("warmup_steps") is not None:
        return int(sched["warmup_steps"])
    warm = sched.get("warmup", 0.05)
    return int(round(warm * steps)) if warm < 1 else int(warm)


def lr_at(step: int, steps: int, opt: dict, sched: dict) -> float:
    """Learning rate at ``step`` (0-based) of ``steps``: warmup, then cosine / WSD / constant."""
    peak = float(opt["lr"])
    warm = warmup_steps(steps, sched)
    final = float(sched.get("final_lr_frac", 0.1)) * peak
    if warm and step < warm:
        return peak * (step + 1) / warm
    kind = sched.get("type", "cosine")
    if kind == "constant":
        return peak
    if kind == "cosine":
        p = (step - warm) / max(1, steps - warm)
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    if kind == "wsd":
        start = cooldown_start(steps, sched)
        if step < start:
            return peak
        p = (step - start + 1) / (steps - start)
        shape = sched.get("shape") or "linear"
        if shape == "linear":
            return peak + (final - peak) * p
        if shape == "1-sqrt":
            return final + (peak - final) * (1.0 - math.sqrt(p))
        raise SettingsError(f"unknown cooldown shape {shape!r}; use {' or '.join(COOLDOWN_SHAPES)}")
    raise SettingsError(f"unknown schedule {kind!r}; use cosine, wsd or constant")


def schedule(steps: int, opt: dict, sched: dict) -> np.ndarray:
    """The learning rate at every step: :func:`lr_at` for each step, worked out on arrays (a plan of a million
    steps took 3 s step by step)."""
    s = np.arange(steps, dtype=float)
    peak = float(opt["lr"])
    warm = warmup_steps(steps, sched)
    final = float(sched.get("final_lr_frac", 0.1)) * peak
    kind = sched.get("type", "cosine")
    if kind == "constant":
        lr = np.full(steps, peak)
    elif kind == "cosine":
        p = np.minimum(1.0, (s - warm) / max(1, steps - warm))
        lr = final + (peak - final) * 0.5 * (1 + np.cos(np.pi * p))
    elif kind == "wsd":
        start = cooldown_start(steps, sched)
        p = np.maximum((s - start + 1) / max(1, steps - start), 0.0)
        shape = sched.get("shape") or "linear"
        if shape == "linear":
            lr = peak + (final - peak) * p
        elif shape == "1-sqrt":
            lr = final + (peak - final) * (1.0 - np.sqrt(p))
        else:
            raise SettingsError(f"unknown cooldown shape {shape!r}; use {' or '.join(COOLDOWN_SHAPES)}")
        lr = np.where(s < start, peak, lr)
    else:
        raise SettingsError(f"unknown schedule {kind!r}; use cosine, wsd or constant")
    if warm:
        lr = np.where(s < warm, peak * (s + 1) / warm, lr)
    return lr


def areas(lr: np.ndarray, tokens_per_step, lam: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """Forward area S1 and annealing area S2 after each step (Tissue et al. 2024).

    S1 = sum_i (lr_i / lr_max) * tokens_i, in "full-rate tokens", so runs with
    different batch sizes share one axis; S2 = sum_i m_i with
    m_i = lam * m_(i-1) + max(lr_(i-1) - lr_i, 0) / lr_max, per step (warmup is not annealing).
    """
    lr = np.asarray(lr, float)
    if not lr.size:
        return np.zeros(0), np.zeros(0)
    peak = lr.max() if lr.max() > 0 else 1.0
    eta = lr / peak
    b = np.broadcast_to(np.asarray(tokens_per_step, float), eta.shape)
    S1 = np.cumsum(eta * b)
    drop = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0)  # warmup adds nothing
    from scipy.signal import lfilter

    m = lfilter([1.0], [1.0, -lam], drop)  # m_i = lam m_(i-1) + drop_i, in C (a Python loop: 1.6 us a step)
    return S1, np.cumsum(m)
