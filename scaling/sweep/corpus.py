"""Training data: two corpora that need no download (byte tokens, vocabulary 256), and your own tokens.

- ``python-stdlib``: the Python standard library's own sources, which lie on every
  machine with Python; files in sorted order, the last 5% held out for evaluation
  (``val_fraction``; the same for ``synthetic``).
- ``synthetic``: a random unifilar probabilistic automaton over bytes. Each state
  emits one of a few bytes and the next state is a fixed function of (state, byte),
  so the state can be tracked from the past and the entropy rate is exactly the
  stationary average of the per-state emission entropies. The best possible loss is
  known, which no public dataset allows: the fitted E of a scaling law can be
  checked against it.
- ``tokens``: a folder of token files, as ``scaling data prepare`` writes them (``train.bin``, ``val.bin``,
  ``meta.json``), nanoGPT-style ``train.bin``/``val.bin`` (dtype and vocabulary from the sweep definition),
  or ``train.npy``/``val.npy``. Memory-mapped, never loaded whole; checked (sizes, dtype, vocabulary,
  split lengths) before anything trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, SettingsError

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

    def bayes_loss(self, tokens: np.ndarray, seq_len: int, n_windows: int | None = None,
                   starts: np.ndarray | None = None) -> float:
        """Best achievable mean loss (nats) under the trainer's evaluation protocol.

        Each window of ``seq_len + 1`` tokens predicts tokens 1..seq_len from the ones
        before them, starting with no knowledge of the state (the stationary
        distribution). Exact forward filtering with the true automaton gives the
        Bayes-optimal predictions; this exceeds the entropy rate by what it costs to
        work out the state at the start of each window. ``starts``: the windows' first offsets (the trainer's
        evaluation sample, ``train.eval_windows``); else the first ``n_windows`` back-to-back windows.
        """
        S, k = self.emit_probs.shape
        if starts is None:
            n_win = (len(tokens) - 1) // seq_len if n_windows is None else n_windows
            starts = np.arange(n_win) * seq_len
        elif n_windows is not None:
            raise ValueError("give n_windows or starts, not both")
        starts = np.asarray(starts, np.int64)
        if starts.size == 0 or starts.min() < 0 or starts.max() + seq_len + 1 > len(tokens):
            raise ValueError(f"window starts must lie in [0, {len(tokens) - seq_len - 1}] (windows of {seq_len + 1} "
                             f"tokens in a stream of {len(tokens)})")
        n_win = len(starts)
        X = np.stack([tokens[i:i + seq_len + 1] for i in starts]).astype(np.int64)
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


def synthetic_automaton(spec: dict) -> Automaton:
    """The automaton of a ``synthetic`` corpus spec.

    ``shift_seed`` (optional) gives a shifted distribution of the same language: the emission probabilities are
    redrawn with that seed while the bytes each state emits and the transitions stay those of ``seed``. A model
    trained on ``seed`` keeps what it learnt about tracking the hidden state and must relearn the odds: a downstream
    task that shares structure with its pretraining (what fine-tuning studies need), with an exact best loss.
    """
    auto = Automaton.random(int(spec.get("states", 256)), int(spec.get("branching", 4)),
                            float(spec.get("concentration", 1.0)), int(spec.get("seed", 0)))
    if spec.get("shift_seed") is None:
        return auto
    k = auto.emit_probs.shape[1]
    probs = np.random.default_rng([int(spec["shift_seed"]), 5]).dirichlet(
        np.full(k, float(spec.get("concentration", 1.0))), size=len(auto.emit_probs))
    return Automaton(auto.emit_bytes, probs, auto.next_state)


def load_corpus(spec: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train tokens, eval tokens, info) for a corpus spec such as {"name": "synthetic", "states": 256}."""
    name = spec.get("name", "python-stdlib")
    if name == "python-stdlib":
        data = stdlib_tokens(int(spec.get("max_bytes", 24_000_000)))
        cut = int(len(data) * (1 - float(spec.get("val_fraction") or 0.05)))
        return data[:cut], data[cut:], {"corpus": name, "bytes": int(len(data))}
    if name == "synthetic":
        auto = synthetic_automaton(spec)
        n = int(spec.get("tokens", 8_000_000))
        key = f"synthetic-v3-{spec.get('states', 256)}-{spec.get('branching', 4)}-{spec.get('concentration', 1.0)}-{spec.get('seed', 0)}-{n}"
        if spec.get("shift_seed") is not None:
            key += f"-shift{int(spec['shift_seed'])}"
        path = cache_dir() / f"{key}.npy"
        if path.exists():
            data = np.load(path, mmap_mode="r")
        else:
            data = auto.sample(n, seed=int(spec.get("seed", 0)))
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # several workers may build it at once
            np.save(tmp, data)
            os.replace(tmp, path)
        cut = int(len(data) * (1 - float(spec.get("val_fraction") or 0.05)))
        return data[:cut], data[cut:], {"corpus": name, "entropy_rate": auto.entropy_rate()}
    if name == "tokens":
        folder = token_folder(spec)
        train, val = folder.open()
        return train, val, {"corpus": name, "path": str(folder.path), "vocab_size": folder.vocab_size,
                            "eos_id": folder.eos_id}
    raise SettingsError(f"unknown corpus {name!r}; use one of {', '.join(CORPORA)}")


CORPORA = ("python-stdlib", "synthetic", "tokens")


# ------------------------------------------------------------------ your own tokens
class CorpusError(DataError):
    """A token corpus cannot be trained on: missing or damaged files, ids outside the vocabulary, a short split."""


#: dtypes a token file may hold (unsigned, or signed with no negative ids)
TOKEN_DTYPES = ("uint8", "uint16", "uint32", "int16", "int32", "int64", "uint64")


@dataclass
class TokenFolder:
    """The two splits of a token corpus, with what is known about them (before any file is read whole)."""

    path: Path
    train: Path
    val: Path
    kind: str  # "bin" or "npy"
    dtype: np.dtype
    vocab_size: int | None
    eos_id: int | None
    meta: dict = field(default_factory=dict)

    def open(self) -> tuple[np.ndarray, np.ndarray]:
        """Both splits, memory-mapped (read-only), as 1-D arrays."""
        return _open_tokens(self.train, self.kind, self.dtype), _open_tokens(self.val, self.kind, self.dtype)

    def fingerprint(self, legacy: bool = False) -> str:
        """A cheap identity of the tokens: sizes, the first and last 64 KiB of each file, and what meta.json says
        about the tokens (vocabulary, dtype, EOS, counts, and the content hash `scaling data prepare` records), not
        where they came from: the same text prepared again (its files touched, copied or checked out anew) gives
        the same tokens and the same fingerprint. ``legacy``: the identity before 2026-12-02, which hashed the whole
        meta.json (the sources' paths and times too), to compare with stores written then."""
        h = hashlib.sha1()
        for f in (self.train, self.val):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}|".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(65536))
                fh.seek(max(0, size - 65536))
                h.update(fh.read(65536))
        if legacy:
            h.update(json.dumps(self.meta, sort_keys=True, default=str).encode())
            return h.hexdigest()[:16]
        tokens = {k: self.meta.get(k) for k in TOKEN_META if k in self.meta}
        h.update(json.dumps(tokens, sort_keys=True, default=str).encode())
        return FINGERPRINT_PREFIX + h.hexdigest()[:16]


#: what a folder's meta.json says about the tokens themselves (its fingerprint): not the sources' paths or times
TOKEN_META = ("vocab_size", "dtype", "eos_id", "n_train_tokens", "n_val_tokens", "sha1")
#: marks a fingerprint of the tokens (TokenFolder.fingerprint), told apart from the earlier one of meta.json whole
FINGERPRINT_PREFIX = "t:"


def same_tokens(recorded: str, spec: dict) -> bool:
    """Whether the tokens corpus ``spec`` (its path) still holds the data a store ``recorded`` the fingerprint of;
    a fingerprint from before FINGERPRINT_PREFIX is compared as it was computed then."""
    try:
        folder = token_folder(spec)
    except (CorpusError, SettingsError):
        return False
    return folder.fingerprint(legacy=not str(recorded).startswith(FINGERPRINT_PREFIX)) == recorded


def _open_tokens(path: Path, kind: str, dtype) -> np.ndarray:
    if kind == "npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr.reshape(-1)  # a view: (n_seq, seq_len) arrays are one stream
    return np.memmap(path, dtype=dtype, mode="r")


def _npy_header(path: Path) -> tuple[np.dtype, tuple]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header; maps, does not load, the data
    except (ValueError, OSError, EOFError) as exc:
        raise CorpusError(f"{path} is not a readable .npy array ({exc})") from None
    if arr.ndim > 1 and not arr.flags.c_contiguous:
        raise CorpusError(f"{path} is stored in Fortran order; save it with np.save(path, np.ascontiguousarray(a))")
    return arr.dtype, arr.shape


def token_folder(spec: dict) -> TokenFolder:
    """Find and check the files of a ``tokens`` corpus (``spec``: its corpus settings: path, dtype, vocab_size).

    Checks what can be checked without reading the data: the folder and both splits exist, each file's size
    is a whole number of tokens of its dtype, the settings agree with ``meta.json``. Raises :class:`CorpusError`
    (or :class:`SettingsError` for a missing or bad setting) naming the file and the fix.
    """
    raw = spec.get("path")
    if not raw:
        raise SettingsError("corpus.path is missing: the tokens corpus trains on a folder with train.bin and val.bin "
                            "(from `scaling data prepare`) or train.npy and val.npy")
    path = Path(os.path.expanduser(str(raw)))
    if not path.exists():
        raise CorpusError(f"corpus.path {path} does not exist; prepare it with "
                          f"`scaling data prepare --text FILES --tokenizer bytes --out {path}`")
    if not path.is_dir():
        raise CorpusError(f"corpus.path {path} is a file; give the folder holding train.bin and val.bin "
                          "(or train.npy and val.npy)")
    meta: dict = {}
    if (path / "meta.json").exists():
        try:
            meta = json.loads((path / "meta.json").read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            raise CorpusError(f"{path / 'meta.json'} cannot be read ({exc}); prepare the folder again with "
                              "`scaling data prepare`, or delete meta.json and give corpus.dtype and "
                              "corpus.vocab_size") from None
    kinds = [k for k in ("bin", "npy") if (path / f"train.{k}").exists() or (path / f"val.{k}").exists()]
    if not kinds:
        texts = any(f.is_file() for f in path.iterdir())
        raise CorpusError(f"{path} has no train.bin/val.bin or train.npy/val.npy; " + (
            f"if it holds your text, prepare it into its own folder with `scaling data prepare --text '{path}/*' "
            f"--tokenizer TOKENIZER_DIR_OR_bytes --out {path}-tokens` and set corpus.path: {path}-tokens"
            if texts else f"prepare it with `scaling data prepare --text FILES --tokenizer bytes --out {path}`"))
    if len(kinds) > 1:
        raise CorpusError(f"{path} holds both .bin and .npy token files; keep one kind")
    kind = kinds[0]
    for split in ("train", "val"):
        if not (path / f"{split}.{kind}").exists():
            raise CorpusError(f"{path} has no {split}.{kind} (a tokens corpus needs both train.{kind} and val.{kind})")
    train, val = path / f"train.{kind}", path / f"val.{kind}"

    def agree(key, value, source):
        if value is not None and meta.get(key) is not None and str(meta[key]) != str(value):
            raise CorpusError(f"corpus.{key} is {value!r} but {path / 'meta.json'} says {meta[key]!r}; "
                              f"drop corpus.{key} from the sweep definition or prepare the folder again")

    want = spec.get("dtype")
    agree("dtype", want, "yaml")
    if kind == "npy":
        dtypes = {}
        for f in (train, val):
            dt, shape = _npy_header(f)
            if dt.kind not in "ui":
                raise CorpusError(f"{f} holds {dt} values; token ids are integers (uint16, uint32, int32, ...)")
            dtypes[f] = dt
        if dtypes[train] != dtypes[val]:
            raise CorpusError(f"train.npy holds {dtypes[train]} and val.npy {dtypes[val]}; save both with one dtype")
        dtype = dtypes[train]
        if want is not None and np.dtype(str(want)) != dtype:
            raise CorpusError(f"corpus.dtype is {want!r} but {train} holds {dtype}")
    else:
        name = want if want is not None else meta.get("dtype")
        if name is None:
            raise SettingsError(f"{path} has train.bin and val.bin but no meta.json: say what they hold with "
                                "corpus.dtype (uint16 for nanoGPT's files) and corpus.vocab_size")
        if str(name) not in TOKEN_DTYPES:
            raise SettingsError(f"corpus.dtype must be one of {', '.join(TOKEN_DTYPES)}; got {name!r}")
        dtype = np.dtype(str(name))
    vocab = spec.get("vocab_size") if spec.get("vocab_size") is not None else meta.get("vocab_size")
    if vocab is not None and dtype.kind in "ui" and int(vocab) - 1 > np.iinfo(dtype).max:
        raise CorpusError(f"corpus.dtype {dtype} holds ids up to {np.iinfo(dtype).max:,}, but the vocabulary has "
                          f"{int(vocab):,} tokens: the files cannot be {dtype} (nanoGPT's and `scaling data prepare`'s "
                          "files are uint16 up to 65,536 tokens, uint32 above); fix corpus.dtype")
    for f in (train, val):
        size = f.stat().st_size
        if kind == "bin" and size % dtype.itemsize:
            raise CorpusError(f"{f} is {size:,} bytes, not a whole number of {dtype} tokens ({dtype.itemsize} bytes "
                              "each): the dtype is wrong or the file was cut short")
        if size == 0 or (kind == "bin" and size < dtype.itemsize):
            raise CorpusError(f"{f} is empty; prepare the folder again (a larger --val-fraction gives a longer "
                              "validation split)")
        # meta.json (from `scaling data prepare`) counts each split's tokens: a file cut at a token boundary
        # still has a whole number of tokens, but not that many
        counted = meta.get(f"n_{f.stem}_tokens") if kind == "bin" else None
        if isinstance(counted, int) and size // dtype.itemsize != counted:
            raise CorpusError(f"{f} holds {size // dtype.itemsize:,} tokens but {path / 'meta.json'} counts "
                              f"{counted:,}: the file was cut short or changed after it was prepared; prepare the "
                              "folder again with `scaling data prepare`")
    vocab = spec.get("vocab_size")
    agree("vocab_size", vocab, "yaml")
    vocab = vocab if vocab is not None else meta.get("vocab_size")
    eos = meta.get("eos_id")
    return TokenFolder(path.resolve(), train, val, kind, dtype, None if vocab is None else int(vocab),
                       None if eos is None else int(eos), meta)


def _scan(path: Path, arr: np.ndarray) -> tuple[int, int]:
    """(min, max) token id of a split, read in chunks; cached by path, size and modification time."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{arr.dtype}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"tokscan-{key}.json"
    if cached.exists():
        try:
            got = json.loads(cached.read_text())
            return int(got["min"]), int(got["max"])
        except (ValueError, KeyError, OSError):
            pass
    lo, hi = None, None
    step = 1 << 24
    for i in range(0, len(arr), step):
        chunk = np.asarray(arr[i:i + step])
        cmin, cmax = int(chunk.min()), int(chunk.max())
        lo = cmin if lo is None else min(lo, cmin)
        hi = cmax if hi is None else max(hi, cmax)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"min": lo, "max": hi, "path": str(path)}))
    os.replace(tmp, cached)
    return lo, hi


def check_tokens(folder: TokenFolder, vocab_size: int, seq_len: int) -> dict:
    """Everything that would make training on ``folder`` fail or mislead, as one :class:`CorpusError`.

    Token ids must lie in [0, vocab_size); the validation split must hold at least two evaluation windows
    (``2 * seq_len + 1`` tokens) and the training split at least one batch row. Returns lengths and id ranges.
    """
    train, val = folder.open()
    out = {"n_train_tokens": int(len(train)), "n_val_tokens": int(len(val))}
    if len(train) < seq_len + 2:
        raise CorpusError(f"{folder.train} holds {len(train):,} tokens; training on {seq_len}-token sequences "
                          f"needs at least {seq_len + 2}")
    if len(val) < 2 * seq_len + 1:
        raise CorpusError(f"the validation split {folder.val} holds {len(val):,} tokens: too short to evaluate "
                          f"{seq_len}-token windows (at least {2 * seq_len + 1}; aim for 100k or more); prepare the "
                          "folder again with a larger --val-fraction")
    for f, arr in ((folder.train, train), (folder.val, val)):
        lo, hi = _scan(f, arr)
        if lo < 0:
            raise CorpusError(f"{f} holds a negative token id ({lo}); token ids run from 0 to vocab_size - 1")
        if hi >= vocab_size:
            where = ("model.vocab_size" if folder.vocab_size is None or folder.vocab_size != vocab_size
                     else "the corpus's vocab_size")
            raise CorpusError(f"{f} holds token id {hi}, but {where} is {vocab_size} (ids must be < vocab_size): "
                              "the files were made with another tokenizer, or the vocabulary setting is wrong")
        out[f"max_id_{f.stem}"] = hi
    return out
