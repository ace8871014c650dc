"""``scaling data prepare``: text in, token files out (``train.bin``, ``val.bin``, ``meta.json``).

The files are flat arrays of token ids (uint16 when the vocabulary fits, else uint32), documents separated by
the EOS id: what a sweep's ``corpus: {name: tokens, path: DIR}`` trains on, and what nanoGPT's ``prepare.py``
writes. Sources: plain text files (each file one document), or a Hugging Face ``datasets`` dataset saved with
``save_to_disk`` (each row one document). Tokenizers: a local folder ``transformers.AutoTokenizer`` loads, or
``bytes`` (UTF-8 bytes, ids 0-255, EOS 256).

The held-out split is spread over the corpus: documents are cut into pieces of at most ``PIECE_CHARS``
characters (at line ends), and a piece goes to ``val.bin`` whenever that brings the validation share closer
to ``val_fraction``, so one long file is split too and the validation tokens come from all over the corpus.
Everything is written to temporary files and renamed at the end, ``meta.json`` last: an interrupted run
leaves no folder that looks finished, and running the same command again starts over (or, when the folder
was finished with the same inputs and settings, returns at once).

This module never imports torch; transformers and datasets are imported only when asked for.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError, MissingExtraError, ScalingWarning, SettingsError

#: a document is cut into pieces of at most this many characters (at a line end when there is one)
PIECE_CHARS = 8192
#: text tokenized per call of the tokenizer
BATCH_CHARS = 1 << 20
FORMAT = 1


class PrepareError(DataError):
    """The inputs of ``scaling data prepare`` cannot be turned into token files."""


# ------------------------------------------------------------------ tokenizers
class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0-255, EOS 256, vocabulary 257."""

    name = identity = "bytes"
    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8", errors="replace"), dtype=np.uint8) for t in texts]


class HFTokenizer:
    """A local tokenizer folder loaded with ``transformers.AutoTokenizer.from_pretrained``."""

    def __init__(self, folder: str | Path, eos_token: str | None = None):
        path = Path(os.path.expanduser(str(folder)))
        if not path.exists():
            raise PrepareError(f"--tokenizer {path} does not exist; give a folder that "
                               "transformers.AutoTokenizer.from_pretrained loads, or `--tokenizer bytes`")
        if not path.is_dir():
            raise PrepareError(f"--tokenizer {path} is a file; give the folder holding it (with tokenizer.json or "
                               "tokenizer_config.json), or `--tokenizer bytes`")
        from .._extras import require

        require("transformers")
        import logging

        import transformers

        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever the folder holds, one line saying it does not load
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise PrepareError(f"the tokenizer folder {path} does not load with transformers.AutoTokenizer "
                               f"({type(exc).__name__}: {first}); it needs tokenizer.json (or a tokenizer's "
                               "vocabulary files) and tokenizer_config.json, as save_pretrained writes them") from None
        finally:
            transformers.logging.set_verbosity(level)
        if not callable(tok):  # AutoTokenizer can fall back to a processor or None
            raise PrepareError(f"the folder {path} does not hold a tokenizer (AutoTokenizer gave {type(tok).__name__})")
        tok.model_max_length = 1 << 62  # documents are longer than a model's context; no warning about it
        self.tok = tok
        self.name = str(path.resolve())
        h = hashlib.sha1()
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.stat().st_size < 1 << 28:
                h.update(f.name.encode() + f.read_bytes())
        self.identity = h.hexdigest()
        self.vocab_size = int(len(tok))
        if eos_token is not None:
            eos = tok.convert_tokens_to_ids(eos_token)
            if eos is None or (tok.unk_token_id is not None and eos == tok.unk_token_id and eos_token != tok.unk_token):
                raise PrepareError(f"--eos-token {eos_token!r} is not in the vocabulary of {path}")
        else:
            eos = tok.eos_token_id
            if eos is None:
                raise PrepareError(f"the tokenizer in {path} has no EOS token to separate documents with; name one of "
                                   "its tokens with --eos-token (for example --eos-token '<|endoftext|>')")
        self.eos_id = int(eos)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        out = self.tok(texts, add_special_tokens=False, return_attention_mask=False,
                       return_token_type_ids=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int64) for ids in out]


def load_tokenizer(spec: str, eos_token: str | None = None):
    """``"bytes"`` or a local tokenizer folder."""
    if str(spec) == "bytes":
        if eos_token is not None:
            raise SettingsError("--eos-token applies to a tokenizer folder; `--tokenizer bytes` separates documents "
                                "with id 256")
        return ByteTokenizer()
    return HFTokenizer(spec, eos_token)


# ------------------------------------------------------------------ sources
def _prepared(folder: Path) -> bool:
    """Whether ``folder`` holds a prepared corpus (its token files are output, never text to read)."""
    return (folder / "meta.json").is_file() and ((folder / "train.bin").exists() or (folder / "val.bin").exists())


def text_files(patterns: list[str], exclude: Path | None = None) -> list[Path]:
    """Files named by paths, folders (every file under them, hidden ones skipped) or globs (``**`` recursive).

    Never the files of a prepared corpus (a folder with meta.json and train.bin/val.bin) or anything under
    ``exclude`` (the --out folder, which may sit inside the text's folder): a rerun must not read its own output."""
    files: list[Path] = []
    for pat in patterns:
        p = Path(os.path.expanduser(pat))
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            found = sorted(Path(f) for f in glob.glob(os.path.expanduser(pat), recursive=True) if Path(f).is_file())
        if not found and p.is_dir():
            raise PrepareError(f"--text {pat} is a folder with no files in it (hidden files and folders are skipped)")
        if not found:
            raise PrepareError(f"--text {pat}: no such file, and no files match it"
                               + (" (quote a glob so the shell does not expand it)" if "*" not in pat else ""))
        files.extend(found)
    unique = list(dict.fromkeys(f.resolve() for f in files))
    out = exclude.resolve() if exclude is not None else None
    kept = [f for f in unique if not (out is not None and (f.parent == out or out in f.parents))
            and not _prepared(f.parent)]
    if unique and not kept:
        raise PrepareError(f"--text {' '.join(map(str, patterns))} names only the files of prepared corpora (or of "
                           "--out): give the text files themselves")
    return kept


def _pieces(text: str) -> Iterator[str]:
    """A document cut into pieces of at most PIECE_CHARS characters, at line ends where possible."""
    start = 0
    while len(text) - start > PIECE_CHARS:
        cut = text.rfind("\n", start + PIECE_CHARS // 2, start + PIECE_CHARS)
        cut = start + PIECE_CHARS if cut < 0 else cut + 1
        yield text[start:cut]
        start = cut
    yield text[start:]


class _Source:
    """Documents in a fixed order, with a size for the progress bar and an identity for reruns."""

    def __init__(self, text=None, hf_dataset=None, text_column="text", exclude: Path | None = None):
        if (text is None) == (hf_dataset is None):
            raise SettingsError("give the text with --text PATH_OR_GLOB (plain text files) or --hf-dataset DIR "
                                "(a datasets dataset saved with save_to_disk), not both")
        self.text_column = text_column
        if text is not None:
            self.kind = "text"
            self.files = text_files([text] if isinstance(text, (str, Path)) else list(text), exclude)
            self.total = sum(f.stat().st_size for f in self.files)
            self.unit = "B"
            self.describe = {"text": [str(f) for f in self.files[:20]] + (
                [f"... {len(self.files) - 20} more"] if len(self.files) > 20 else []), "files": len(self.files),
                "bytes": self.total}
            h = hashlib.sha1()
            for f in self.files:
                st = f.stat()
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            self.identity = h.hexdigest()
        else:
            self.kind = "hf"
            self.ds = _load_hf(hf_dataset, text_column)
            self.total = len(self.ds)
            self.unit = "doc"
            path = Path(os.path.expanduser(str(hf_dataset))).resolve()
            self.describe = {"hf_dataset": str(path), "text_column": text_column, "rows": len(self.ds)}
            fp = getattr(self.ds, "_fingerprint", None) or "|".join(
                f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in sorted(path.rglob("*")) if f.is_file())
            self.identity = hashlib.sha1(f"{path}|{text_column}|{fp}".encode()).hexdigest()

    def documents(self) -> Iterator[tuple[str, int]]:
        """(text, progress units it stands for)."""
        if self.kind == "text":
            self.skipped, self.replaced = [], []
            for f in self.files:
                data = f.read_bytes()
                if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte-order mark
                    try:
                        yield data.decode("utf-16"), len(data)
                        continue
                    except UnicodeDecodeError:
                        pass
                if b"\0" in data[:8192]:  # not a text file (a .pyc beside the sources, an image)
                    self.skipped.append(f)
                    yield "", len(data)
                    continue
                try:
                    yield data.decode("utf-8-sig"), len(data)
                except UnicodeDecodeError:  # latin-1 or another 8-bit encoding: kept, but said
                    text = data.decode("utf-8", errors="replace")
                    self.replaced.append((f, text.count("\ufffd")))
                    yield text, len(data)
        else:
            for batch in self.ds.iter(batch_size=1000):
                for t in batch[self.text_column]:
                    yield ("" if t is None else str(t)), 1


def _is_text(feature) -> bool:
    """A datasets feature that holds one string a row: Value("string"), "large_string" or "string_view"."""
    return type(feature).__name__ == "Value" and "string" in str(getattr(feature, "dtype", ""))


def _load_hf(folder, column: str):
    path = Path(os.path.expanduser(str(folder)))
    if not path.is_dir():
        raise PrepareError(f"--hf-dataset {path} is not a folder; give the folder `dataset.save_to_disk(DIR)` wrote")
    try:
        import datasets
    except ImportError:
        raise MissingExtraError("--hf-dataset needs the datasets package: pip install datasets (it comes with "
                                "pip install 'scaling[train]')", name="datasets") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise PrepareError(f"--hf-dataset {path} does not load with datasets.load_from_disk ({first}); give a folder "
                           "that Dataset.save_to_disk or DatasetDict.save_to_disk wrote") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            if len(ds) > 1:
                others = sorted(k for k in ds if k != "train")
                warnings.warn(f"--hf-dataset {path} holds the splits {sorted(ds)}: preparing 'train' only "
                              f"({len(ds['train']):,} rows; {', '.join(others)} left out), and holding out "
                              "--val-fraction of it; to prepare another split, save it on its own", ScalingWarning,
                              stacklevel=2)
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise PrepareError(f"--hf-dataset {path} holds the splits {sorted(ds)} and none is called train; save "
                               "the one to prepare on its own")
    if column not in ds.column_names:
        raise PrepareError(f"--hf-dataset {path} has no column {column!r}; its columns are {ds.column_names} "
                           "(choose one with --text-column)")
    feature = ds.features[column]
    if not _is_text(feature):
        texts = [c for c in ds.column_names if _is_text(ds.features[c])]
        held = getattr(feature, "dtype", None) or type(feature).__name__
        hint = (f"join each row's pieces into one string first, e.g. ds.map(lambda r: {{'{column}': "
                f"'\\n'.join(r['{column}'])}})" if type(feature).__name__ in ("Sequence", "List", "LargeList")
                else f"its text columns are {texts}" if texts else "it has no text column")
        raise PrepareError(f"--hf-dataset {path}: column {column!r} holds {held}, not text; {hint} "
                           "(choose the column with --text-column)")
    return ds


# ------------------------------------------------------------------ prepare
def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _settings(source: _Source, tok, val_fraction: float) -> dict:
    return {"format": FORMAT, "source_identity": source.identity, "tokenizer": tok.name,
            "tokenizer_identity": tok.identity, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
            "val_fraction": val_fraction, "piece_chars": PIECE_CHARS}


def prepare(out: str | Path, text=None, hf_dataset=None, text_column: str = "text", tokenizer: str = "bytes",
            val_fraction: float = 0.01, eos_token: str | None = None, progress: bool = True) -> dict:
    """Tokenize the text into ``out/train.bin``, ``out/val.bin`` and ``out/meta.json``; returns the meta.

    See the module's docstring. Raises :class:`PrepareError` (a :class:`~scaling.errors.DataError`) or
    :class:`~scaling.errors.SettingsError` with one line naming the problem.
    """
    if not 0 < float(val_fraction) < 1:
        raise SettingsError(f"--val-fraction must be between 0 and 1 (exclusive); got {val_fraction}")
    val_fraction = float(val_fraction)
    out = Path(os.path.expanduser(str(out)))
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file; give a folder for train.bin, val.bin and meta.json")
    source = _Source(text, hf_dataset, text_column, exclude=out)
    tok = load_tokenizer(tokenizer, eos_token)
    settings = _settings(source, tok, val_fraction)
    meta_path = out / "meta.json"
    if meta_path.exists() and (out / "train.bin").exists() and (out / "val.bin").exists():
        try:
            old = json.loads(meta_path.read_text())
        except (ValueError, OSError):
            old = {}
        if old.get("settings") == settings:
            for stale in out.glob("*.bin.*.tmp"):  # left by a re-prepare that was killed
                stale.unlink(missing_ok=True)
            if progress:
                print(f"{out} is already prepared from the same inputs ({old['n_train_tokens']:,} train and "
                      f"{old['n_val_tokens']:,} validation tokens); nothing to do")
            return {**old, "skipped": True}
        if old:
            n_old = old.get("n_train_tokens")
            n_old = f"{n_old:,}" if isinstance(n_old, int) else "?"
            warnings.warn(f"{out} holds a corpus prepared from other inputs or settings, or from the same files "
                          f"touched since ({n_old} train tokens, tokenizer {old.get('tokenizer', '?')}); it is prepared "
                          "again, and a sweep that trained on it resumes only if the tokens come out the same (give "
                          "another --out to keep both)", ScalingWarning, stacklevel=2)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / ".prepare.lock", "w")
    except OSError as exc:
        raise SettingsError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    import fcntl

    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SettingsError(f"another `scaling data prepare` is writing {out}; wait for it, or give another --out") from None
    try:
        for stale in out.glob("*.bin.*.tmp"):  # left by a run that was killed
            stale.unlink(missing_ok=True)
        return _write(out, source, tok, val_fraction, settings, progress)
    finally:
        lock.close()


def _write(out: Path, source: _Source, tok, val_fraction: float, settings: dict, progress: bool) -> dict:
    """Tokenize into temporary files; the finished folder appears at the end (the old one stays until then)."""
    meta_path = out / "meta.json"
    dtype = dtype_for(tok.vocab_size)
    tmp = {s: out / f"{s}.bin.{os.getpid()}.tmp" for s in ("train", "val")}
    counts = {"train": 0, "val": 0}
    n_docs = 0
    bar = _bar(source, progress)
    files = {s: open(p, "wb") for s, p in tmp.items()}
    digest = {s: hashlib.sha1() for s in tmp}  # of the token bytes: the folder's identity for a sweep's fingerprint
    try:
        pending: list[tuple[str, bool, int]] = []  # (piece, ends a document, progress units)
        chars = 0

        def flush():
            nonlocal chars
            if not pending:
                return
            ids = tok.encode_batch([p for p, _, _ in pending])
            for (piece, last, units), arr in zip(pending, ids):
                if last:
                    arr = np.append(arr, tok.eos_id)
                n = len(arr)
                if n:
                    if arr.max(initial=0) >= tok.vocab_size:
                        raise PrepareError(f"the tokenizer {tok.name} produced id {int(arr.max())}, outside its own "
                                           f"vocabulary of {tok.vocab_size}")
                    total = counts["train"] + counts["val"] + n
                    # to val when that brings its share closer to val_fraction: spread over the corpus, no front-loading
                    to_val = abs(counts["val"] + n - val_fraction * total) < abs(counts["val"] - val_fraction * total)
                    split = "val" if to_val else "train"
                    raw = arr.astype(dtype, copy=False).tobytes()
                    files[split].write(raw)
                    digest[split].update(raw)
                    counts[split] += n
                bar.update(units)
            pending.clear()
            chars = 0

        for doc, units in source.documents():
            if not doc:
                bar.update(units)
                continue
            n_docs += 1
            pieces = list(_pieces(doc))
            for i, piece in enumerate(pieces):
                pending.append((piece, i == len(pieces) - 1, units if i == len(pieces) - 1 else 0))
                chars += len(piece)
            if chars >= BATCH_CHARS:
                flush()
        flush()
        for f in files.values():
            f.close()
    except BaseException:
        for f in files.values():
            f.close()
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    skipped = getattr(source, "skipped", [])
    if skipped:
        warnings.warn(f"skipped {len(skipped)} file(s) that are not text (such as {skipped[0]})", ScalingWarning,
                      stacklevel=2)
    replaced = getattr(source, "replaced", [])
    if replaced:
        f, n = replaced[0]
        warnings.warn(f"{len(replaced)} file(s) are not UTF-8 (such as {f}: {n:,} character(s) replaced by U+FFFD): "
                      "the model trains on replacement characters there; convert them first (e.g. iconv -f latin1 "
                      "-t utf-8)", ScalingWarning, stacklevel=2)
    if counts["train"] == 0:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        if counts["val"]:
            raise PrepareError(f"the training split is empty: all {counts['val']:,} tokens went to validation with "
                               f"--val-fraction {val_fraction}; lower --val-fraction")
        raise PrepareError("the text holds no tokens" + (f" ({len(skipped)} file(s) are not text)" if skipped else ""))
    if counts["val"] == 0:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise PrepareError(f"the validation split is empty: documents go to one split or the other in pieces of up "
                           f"to {PIECE_CHARS:,} characters, and with {counts['train']:,} tokens in {n_docs} "
                           f"document(s) every piece is larger than a fraction of {val_fraction} of the whole; give "
                           "more text or a larger --val-fraction")
    if meta_path.exists():
        meta_path.unlink()  # for the moment the files are swapped, the folder must not look finished
    for s, p in tmp.items():
        os.replace(p, out / f"{s}.bin")
    described = dict(source.describe)
    if skipped:  # the files read, and those left out as not text
        described["skipped"] = [str(f) for f in skipped[:20]] + ([f"... {len(skipped) - 20} more"] if len(skipped) > 20 else [])
        if "text" in described:
            left_out = {str(f) for f in skipped}
            described["text"] = [f for f in described["text"] if f not in left_out]
    meta = {"vocab_size": tok.vocab_size, "dtype": dtype.name, "eos_id": tok.eos_id, "tokenizer": tok.name,
            "n_train_tokens": counts["train"], "n_val_tokens": counts["val"], "n_documents": n_docs,
            "source": described, "val_fraction": val_fraction, "settings": settings,
            "sha1": {s: d.hexdigest() for s, d in digest.items()}}
    tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, meta_path)
    return meta


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(source: _Source, progress: bool):
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=source.total, unit=source.unit, unit_scale=source.unit == "B", desc="tokenizing", disable=None)
