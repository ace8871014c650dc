"""Training data that needs no download, as byte tokens (vocabulary 256).

- ``python-stdlib``: the Python standard library's own sources, which lie on every
  machine with Python; files in sorted order, the last 5% held out for evaluation.
- ``synthetic``: a random unifilar probabilistic automaton over bytes. Each state
  emits one of a few bytes and the next state is a fixed function of (state, byte),
  so the state can be tracked from the past and the entropy rate is exactly the
  stationary average of the per-state emission entropies. The best possible loss is
  known, which no public dataset allows: the fitted E of a scaling law can be
  checked against it.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SettingsError

VOCAB = 256


def cache_dir() -> Path:
    d = Path(os.environ.get("SCALING_CACHE", Path.home() / ".cache" / "scaling"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def stdlib_tokens(max_bytes: int = 24_000_000) -> np.ndarray:
    """Bytes of the standard library's .py files (sorted paths), cached as a .npy file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    key = hashlib.sha1(f"{root}|{max_bytes}".encode()).hexdigest()[:12]
    path = cache_dir() / f"stdlib-{key}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    chunks, total = [], 0
    for f in sorted(root.rglob("*.py")):
        if "site-packages" in f.parts or "test" in f.parts or "tests" in f.parts:
            continue
        try:
            b = f.read_bytes()
        except OSError:
            continue
        chunks.append(b)
        total += len(b)
        if total >= max_bytes:
            break
    data = np.frombuffer(b"".join(chunks)[:max_bytes], dtype=np.uint8).copy()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # several workers may build it at once
    np.save(tmp, data)
    os.replace(tmp, path)
    return data


@dataclass(frozen=True)
class Automaton:
    """A unifilar probabilistic automaton over bytes with a known entropy rate."""

    emit_bytes: np.ndarray  # (S, k) the bytes state s can emit
    emit_probs: np.ndarray  # (S, k)
    next_state: np.ndarray  # (S, k) state after emitting emit_bytes[s, j]

    @classmethod
    def random(cls, states: int = 256, branching: int = 4, concentration: float = 1.0, seed=0,
               vocab: int = VOCAB) -> "Automaton":
        """A random automaton emitting tokens in [0, vocab) (``seed``: anything numpy's default_rng takes)."""
        if not 1 <= branching <= vocab <= VOCAB:
            raise SettingsError(f"need 1 <= branching ({branching}) <= vocab ({vocab}) <= {VOCAB}")
        rng = np.random.default_rng(seed)
        emit = np.stack([rng.choice(vocab, size=branching, replace=False) for _ in range(states)])
        probs = rng.dirichlet(np.full(branching, concentration), size=states)
        nxt = rng.integers(0, states, size=(states, branching))
        return cls(emit, probs, nxt)

    def stationary(self) -> np.ndarray:
        S = len(self.emit_probs)
        P = np.zeros((S, S))
        np.add.at(P, (np.repeat(np.arange(S), self.next_state.shape[1]), self.next_state.ravel()),
                  self.emit_probs.ravel())
        w, v = np.linalg.eig(P.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        pi = np.clip(pi / pi.sum(), 0.0, None)  # transient states: exactly 0, not -1e-17
        return pi / pi.sum()

    def entropy_rate(self) -> float:
        """Nats per byte: sum_s pi(s) H(emission | s)."""
        p = self.emit_probs
        h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        return float(self.stationary() @ h)

    def bayes_loss(self, tokens: np.ndarray, seq_len: int, n_windows: int | None = None) -> float:
        """Best achievable mean loss (nats) under the trainer's evaluation protocol.

        Each window of ``seq_len + 1`` tokens predicts tokens 1..seq_len from the ones
        before them, starting with no knowledge of the state (the stationary
        distribution). Exact forward filtering with the true automaton gives the
        Bayes-optimal predictions; this exceeds the entropy rate by what it costs to
        work out the state at the start of each window.
        """
        S, k = self.emit_probs.shape
        n_win = (len(tokens) - 1) // seq_len if n_windows is None else n_windows
        X = np.stack([tokens[i * seq_len:i * seq_len + seq_len + 1] for i in range(n_win)]).astype(np.int64)
        # prob[s, byte] and next[s, byte] as dense tables
        prob = np.zeros((S, VOCAB))
        nxt = np.zeros((S, VOCAB), np.int64)
        rows = np.repeat(np.arange(S), k)
        prob[rows, self.emit_bytes.ravel()] = self.emit_probs.ravel()
        nxt[rows, self.emit_bytes.ravel()] = self.next_state.ravel()
        belief = np.tile(self.stationary(), (n_win, 1))
        total = 0.0
        for t in range(seq_len + 1):
            x = X[:, t]
            p_x = (belief * prob[:, x].T).sum(axis=1)
            if t > 0:
                total += -np.log(np.maximum(p_x, 1e-300)).sum()
            w = belief * prob[:, x].T / np.maximum(p_x, 1e-300)[:, None]
            new = np.zeros_like(belief)
            np.add.at(new, (np.repeat(np.arange(n_win), S), nxt[:, x].T.ravel()), w.ravel())
            belief = new
        return float(total / (n_win * seq_len))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n bytes of one stationary chain (a single stream: no seams a model could not predict)."""
        rng = np.random.default_rng(seed)
        cum = np.cumsum(self.emit_probs, axis=1)
        cum[:, -1] = 1.0
        cum_l, emit_l, nxt_l = cum.tolist(), self.emit_bytes.tolist(), self.next_state.tolist()
        state = int(rng.choice(len(cum), p=self.stationary()))
        out = bytearray(n)
        for i, r in enumerate(rng.random(n).tolist()):
            c = cum_l[state]
            j = 0
            while r > c[j]:
                j += 1
            out[i] = emit_l[state][j]
            state = nxt_l[state][j]
        return np.frombuffer(bytes(out), dtype=np.uint8).copy()


def load_corpus(spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train tokens, eval tokens, info) for a corpus spec such as {"name": "synthetic", "states": 256}."""
    name = spec.get("name", "python-stdlib")
    if name == "python-stdlib":
        data = stdlib_tokens(int(spec.get("max_bytes", 24_000_000)))
        cut = int(len(data) * 0.95)
        return data[:cut], data[cut:], {"corpus": name, "bytes": int(len(data))}
    if name == "synthetic":
        auto = Automaton.random(int(spec.get("states", 256)), int(spec.get("branching", 4)),
                                float(spec.get("concentration", 1.0)), int(spec.get("seed", 0)))
        n = int(spec.get("tokens", 8_000_000))
        key = f"synthetic-v3-{spec.get('states', 256)}-{spec.get('branching', 4)}-{spec.get('concentration', 1.0)}-{spec.get('seed', 0)}-{n}"
        path = cache_dir() / f"{key}.npy"
        if path.exists():
            data = np.load(path, mmap_mode="r")
        else:
            data = auto.sample(n, seed=int(spec.get("seed", 0)))
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # several workers may build it at once
            np.save(tmp, data)
            os.replace(tmp, path)
        cut = int(len(data) * 0.95)
        return data[:cut], data[cut:], {"corpus": name, "entropy_rate": auto.entropy_rate()}
    raise SettingsError(f"unknown corpus {name!r}; use 'python-stdlib' or 'synthetic'")
