"""Gold rewards: the "true" preference the proxy reward models try to learn.

Gao et al. (2022) used a large reward model as the gold standard and labelled
everything with it. Here the default gold is programmatic, so it is exact, cheap
and deterministic, but it has several interacting parts of different difficulty:

* ``unigram``: each token has a value (drawn once from a seeded normal); the
  completion scores the mean value of its tokens. Any reward model, however
  small, learns this: it is a bag of tokens.
* ``bigram``: a sparse set of ordered token pairs earns a bonus each time one
  follows the other. Seeing it needs attention to the previous position.
* ``repetition``: a token used more than ``free_repeats`` times costs the square
  of the excess. Seeing it means counting across the whole completion.

Under the initial policy the three parts vary together only loosely; the cheapest
way for an optimiser to raise a small proxy's score is to repeat the tokens the
proxy likes, which the repetition term punishes. That is the mechanism of
overoptimization: the proxy is right on the policy's own distribution and wrong
off it, and larger proxies, which have learned more of the counting and pair
terms, are wrong later. Golds are found by name in a small registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import SettingsError

_GOLDS: dict[str, Callable[..., "Gold"]] = {}


def register_gold(name: str):
    def deco(cls):
        _GOLDS[name] = cls
        return cls

    return deco


def get_gold(name: str, **kwargs) -> "Gold":
    if name not in _GOLDS:
        raise SettingsError(f"unknown gold reward {name!r}; available: {', '.join(sorted(_GOLDS))}")
    return _GOLDS[name](**kwargs)


class Gold:
    """A deterministic score of completions: ``gold(tokens)`` with tokens (batch, length) -> (batch,)."""

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_gold("features")
@dataclass
class FeatureGold(Gold):
    vocab: int = 32
    seed: int = 0
    w_unigram: float = 1.0
    w_bigram: float = 1.0
    w_repetition: float = 0.25
    free_repeats: int = 2
    satiation: float = 0.0
    satiation_at: float = 0.3
    pairs_per_token: float = 1.0
    dense_bigram: bool = False
    values: np.ndarray = field(init=False, repr=False)
    pair_bonus: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        rng = np.random.default_rng([self.seed, 7])
        self.values = rng.standard_normal(self.vocab)
        n_pairs = int(round(self.pairs_per_token * self.vocab))
        self.pair_bonus = np.zeros((self.vocab, self.vocab))
        idx = rng.choice(self.vocab * self.vocab, size=n_pairs, replace=False)
        self.pair_bonus.flat[idx] = 1.0
        if self.dense_bigram:  # every ordered pair has its own value: needs capacity ~ vocab^2 to learn
            self.pair_bonus = rng.standard_normal((self.vocab, self.vocab)) / 4.0

    def parts(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        y = np.asarray(tokens, dtype=np.int64)
        if y.ndim != 2 or y.shape[1] < 2:
            raise ValueError(f"gold reward scores (batch, length>=2) token arrays, got shape {y.shape}")
        if y.min() < 0 or y.max() >= self.vocab:
            raise ValueError(f"tokens must lie in [0, {self.vocab}), got {y.min()}..{y.max()}")
        T = y.shape[1]
        counts = np.zeros((y.shape[0], self.vocab))
        np.add.at(counts, (np.repeat(np.arange(y.shape[0]), T), y.ravel()), 1.0)
        return {
            "unigram": self.values[y].mean(axis=1),
            "bigram": self.pair_bonus[y[:, :-1], y[:, 1:]].sum(axis=1) / (T - 1) * 4.0,
            "repetition": -(np.maximum(counts - self.free_repeats, 0.0) ** 2).sum(axis=1) / T,
        }

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        p = self.parts(tokens)
        u = p["unigram"]
        u = u - self.satiation * np.maximum(u - self.satiation_at, 0.0) ** 2
        return self.w_unigram * u + self.w_bigram * p["bigram"] + self.w_repetition * p["repetition"]
