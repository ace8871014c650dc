"""Read training logs into a (step, tokens, loss) table, found by name.

Readers: ``jsonl`` (the package's sweep logs need no mapping), ``csv`` (with a
column mapping; W&B CSV exports too), ``hf`` (Hugging Face ``trainer_state.json``),
``tensorboard`` (event files, parsed here: no TensorFlow needed), ``mlflow`` (a
local ``mlruns`` run directory). ``read_log(path)`` picks one from the path.
A partially written last line is skipped, never an error.

A logged NaN or infinity (JSON ``NaN``/``Infinity``, "nan"/"inf" strings, a CSV
``nan``) is kept as a non-finite loss: that is how a diverged step is written. A log
with content of which nothing can be read (binary data, no JSON lines, losses that are
not numbers) is a :class:`DataError` naming why; an empty one (or one still being
written) gives no rows, with the reason in ``df.attrs["note"]``.
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .data import parse_columns, sniff_delimiter
from .errors import DataError

_READERS: dict[str, Callable] = {}

STEP_NAMES = ("step", "Step", "_step", "global_step", "iteration", "iter")
LOSS_NAMES = ("loss", "train_loss", "eval_loss", "train/loss", "loss/train", "validation_loss", "val_loss")


def register_reader(name: str):
    def deco(fn):
        _READERS[name] = fn
        return fn

    return deco


def available_readers() -> list[str]:
    return sorted(_READERS)


def _pick(columns, wanted, what, mapping_key):
    for w in wanted:
        if w in columns:
            return w
    for c in columns:  # e.g. W&B's "run-name - train/loss"
        if any(c.endswith(w) for w in wanted):
            return c
    raise DataError(f"no {what} column among {list(columns)}; map one with --columns {mapping_key}=<column>")


_EMPTY = ["step", "loss", "tokens"]


def _empty(note: str) -> pd.DataFrame:
    """No points (yet): ``attrs["note"]`` says why, for a one-off check that must not read it as healthy."""
    out = pd.DataFrame(columns=_EMPTY)
    out.attrs["note"] = note
    return out


def _losses(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Logged losses as floats, and which rows hold one.

    A number is read as is; a NaN or infinity (JSON ``NaN``/``Infinity``, the strings
    "nan"/"inf", a CSV ``nan``) is kept as that non-finite value, because it is how a
    diverged step is logged; a missing cell (no loss logged on that row) is not a point.
    """
    def one(v):
        if isinstance(v, str):  # "2.3", and "nan"/"inf"/"Infinity" as written for a diverged step
            try:
                return float(v.strip()), True
            except ValueError:
                return np.nan, False
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            return float(v), not math.isnan(v)  # a float NaN is an empty cell or a missing key, not a logged NaN
        return np.nan, False

    pairs = [one(v) for v in raw]
    return (pd.Series([p[0] for p in pairs], index=raw.index, dtype=float),
            pd.Series([p[1] for p in pairs], index=raw.index, dtype=bool))


def _present(v) -> bool:
    """Whether a cell holds anything at all (a missing key or an empty cell does not)."""
    return not (v is None or (np.ndim(v) == 0 and pd.isna(v)))


def _finish(df: pd.DataFrame, columns, source: str) -> pd.DataFrame:
    mapping = parse_columns(columns)
    step = mapping.get("step") or _pick(df.columns, STEP_NAMES, "step", "step")
    loss = mapping.get("loss") or _pick(df.columns, LOSS_NAMES, "loss", "loss")
    for name, col in (("step", step), ("loss", loss)):
        if col not in df.columns:
            raise DataError(f"{source}: --columns maps {name} to {col!r}, which is not a column ({list(df.columns)})")
    values, has_loss = _losses(df[loss])
    out = pd.DataFrame({"step": pd.to_numeric(df[step], errors="coerce"), "loss": values})
    tok = mapping.get("tokens") or ("tokens" if "tokens" in df.columns else None)
    out["tokens"] = pd.to_numeric(df[tok], errors="coerce") if tok else np.nan
    run = mapping.get("run") or next((c for c in RUN_NAMES if c in df.columns), None)
    if run is not None and run not in df.columns:
        raise DataError(f"{source}: --columns maps run to {run!r}, which is not a column ({list(df.columns)})")
    if run is not None:  # a table of several runs' curves: read_log picks one
        ids = df[run].dropna()  # a row that names no run keeps NaN, and belongs to none
        num = pd.to_numeric(ids, errors="coerce")
        if len(num) and num.notna().all() and np.all(num == np.round(num)):  # 1.0 read from a CSV is run 1
            ids = num.astype("int64")
        out["run"] = ids.astype(str).reindex(df.index)
    unreadable = df[loss][~has_loss & df[loss].map(_present).astype(bool)]
    keep = out["step"].notna() & has_loss
    out = out[keep].reset_index(drop=True)
    if out.empty:
        if len(unreadable):
            examples = ", ".join(repr(v) for v in list(dict.fromkeys(map(str, unreadable)))[:3])
            raise DataError(f"nothing could be read from {source}: its {loss!r} values are not numbers "
                            f"(e.g. {examples}); log the loss as a number (float(loss), not a string or tensor)")
        if has_loss.any():
            raise DataError(f"nothing could be read from {source}: no row with a {loss!r} value has a number in "
                            f"its {step!r} column")
        out.attrs["note"] = f"no row has a {loss!r} value yet"
    elif len(unreadable):  # some rows read, some not: say so rather than check only the readable ones in silence
        examples = ", ".join(repr(v) for v in list(dict.fromkeys(map(str, unreadable)))[:3])
        out.attrs["unreadable"] = (f"{len(unreadable)} row(s) of {source} have a {loss!r} value that is not a "
                                   f"number (e.g. {examples}) and were not checked; log the loss as a number")
    return out


def _json(text: str):
    """json.loads that keeps NaN/Infinity as the strings "NaN"/"Infinity", so a logged NaN is told from a missing key."""
    return json.loads(text, parse_constant=str)


def _text(path) -> str:
    return Path(path).read_bytes().decode("utf-8", "replace")


def _binary(text: str) -> bool:
    return "\0" in text or text.count("\ufffd") > 0.01 * len(text)


def _not_text(path) -> DataError:
    return DataError(f"nothing could be read from {path}: it is not a text log but binary data (TensorBoard "
                     "event files are read with --reader tensorboard)")


@register_reader("jsonl")
def read_jsonl(path, columns=None) -> pd.DataFrame:
    text = _text(path)
    if not text.strip():
        return _empty("the log is empty")
    recs, complete = [], 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        complete += i < len(lines) - 1  # the last piece has no newline yet: the writer may be mid-line
        try:
            rec = _json(line)
        except json.JSONDecodeError:
            continue  # a partial last line, or a corrupt line in the middle: skip it, keep the rest
        if isinstance(rec, dict):
            recs.append(rec)
    if not recs:
        if _binary(text):
            raise _not_text(path)
        if not complete:
            return _empty("the log holds only a partly written line")
        try:
            whole = _json(text)
        except json.JSONDecodeError:
            whole = None
        hint = (" it is a Hugging Face trainer_state.json: pass --reader hf" if isinstance(whole, dict)
                and "log_history" in whole else " each line must be one JSON object like {\"step\": 10, \"loss\": 2.3}")
        raise DataError(f"nothing could be read from {path}: no line of it is a JSON object;{hint}")
    df = pd.DataFrame(recs)
    mapping = parse_columns(columns)
    if "loss" not in mapping and "loss" not in df.columns and "train_loss" in df.columns:
        mapping["loss"] = "train_loss"  # the package's own logs
    return _finish(df, mapping, str(path))


def _complete_lines(text: str) -> str:
    """A CSV log without its last line when that line is still being written: no newline yet and fewer fields than
    the header (a finished log without a final newline keeps its last row)."""
    if text.endswith("\n") or "\n" not in text.strip():
        return text
    head, last = text[:text.rfind("\n") + 1], text[text.rfind("\n") + 1:]
    header = text.lstrip().split("\n", 1)[0]
    sep = sniff_delimiter(header)
    return head if last.count(sep) < header.count(sep) else text


@register_reader("csv")
def read_csv(path, columns=None) -> pd.DataFrame:
    text = _text(path)
    if not text.strip():
        return _empty("the log is empty")
    if _binary(text):
        raise _not_text(path)
    text = _complete_lines(text)
    try:  # a literal nan/inf stays a string here, so _finish keeps it as a diverged point; an empty cell is missing
        sep = sniff_delimiter(text.lstrip().split("\n", 1)[0])  # semicolon or tab exports read like fit's tables
        df = pd.read_csv(io.StringIO(text), sep=sep, on_bad_lines="skip", keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return _empty("the log is empty")
    except pd.errors.ParserError as exc:
        raise DataError(f"nothing could be read from {path}: it is not a CSV table ({exc})") from None
    out = _finish(df, columns, str(path))
    if not text.endswith("\n") and len(out):  # its last row may be cut short: a follower waits for its newline
        out.attrs["unterminated_step"] = float(pd.to_numeric(out["step"], errors="coerce").iloc[-1])
    return out


@register_reader("hf")
def read_trainer_state(path, columns=None) -> pd.DataFrame:
    p = Path(path)
    if p.is_dir():
        p = p / "trainer_state.json"
    try:
        state = _json(_text(p))
    except json.JSONDecodeError:
        return _empty(f"{p} is not complete JSON (being rewritten?)")  # being rewritten: try again later
    if not isinstance(state, dict):
        raise DataError(f"nothing could be read from {p}: it is not a trainer_state.json (no log_history)")
    hist = pd.DataFrame(state.get("log_history", []))
    if hist.empty:
        return _empty("its log_history is empty")
    mapping = parse_columns(columns)
    mapping.setdefault("step", "step")
    if "loss" not in mapping:
        mapping["loss"] = "loss" if "loss" in hist.columns else "eval_loss"
    return _finish(hist, mapping, str(p))


@register_reader("mlflow")
def read_mlflow(path, columns=None) -> pd.DataFrame:
    """A run directory of MLflow's file store: metrics/<name> holds 'timestamp value step' lines."""
    p = Path(path)
    metrics = p / "metrics" if (p / "metrics").is_dir() else p
    mapping = parse_columns(columns)
    name = mapping.get("loss")
    if name is None:
        names = sorted(f.name for f in metrics.iterdir() if f.is_file()) if metrics.is_dir() else []
        cand = [n for n in names if "loss" in n]
        if not cand:
            raise DataError(f"no loss metric in {metrics} (metrics: {names}); name one with --columns loss=<metric>")
        name = cand[0]
    rows = []
    for line in (metrics / name).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            try:
                rows.append({"step": int(parts[2]), "loss": float(parts[1])})
            except ValueError:
                continue
    df = pd.DataFrame(rows, columns=["step", "loss"])
    df["tokens"] = np.nan
    return df


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a protobuf message, enough for TensorBoard scalar events."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise DataError(f"unsupported protobuf wire type {wire}")
        yield field, wire, v


def tensorboard_scalars(path) -> pd.DataFrame:
    """All scalar values (tag, step, value) in one event file or a directory of them."""
    p = Path(path)
    files = sorted(p.glob("events.out.tfevents.*")) if p.is_dir() else [p]
    rows = []
    for f in files:
        data = f.read_bytes()
        i = 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            if i + 12 + n + 4 > len(data):
                break  # a record still being written
            event = data[i + 12:i + 12 + n]
            i += 12 + n + 4
            step, summary = 0, None
            for field, _, v in _fields(event):
                if field == 2:
                    step = v
                elif field == 5:
                    summary = v
            if summary is None:
                continue
            for field, _, value in _fields(summary):
                if field != 1:
                    continue
                tag, val = None, None
                for f2, w2, v2 in _fields(value):
                    if f2 == 1:
                        tag = v2.decode("utf-8", "replace")
                    elif f2 == 2 and w2 == 5:
                        (val,) = struct.unpack("<f", v2)
                if tag is not None and val is not None:
                    rows.append({"tag": tag, "step": step, "value": val})
    return pd.DataFrame(rows, columns=["tag", "step", "value"])


@register_reader("tensorboard")
def read_tensorboard(path, columns=None) -> pd.DataFrame:
    try:
        sc = tensorboard_scalars(path)
    except (DataError, struct.error, IndexError) as exc:  # a damaged record: truncated or not protobuf
        raise DataError(f"{path} is not a readable TensorBoard event file ({exc or type(exc).__name__})") from None
    if sc.empty:
        return pd.DataFrame(columns=["step", "loss", "tokens"])
    mapping = parse_columns(columns)
    tags = list(dict.fromkeys(sc["tag"]))
    tag = mapping.get("loss") or next((t for t in tags if "loss" in t.lower()), None)
    if tag is None or tag not in tags:
        raise DataError(f"no loss scalar in {path} (tags: {tags}); name one with --columns loss=<tag>")
    df = sc[sc["tag"] == tag].rename(columns={"value": "loss"})[["step", "loss"]]
    df["tokens"] = np.nan
    return df.reset_index(drop=True)


def write_tensorboard_scalars(path, tag: str, steps, values) -> None:
    """Write scalars as a TensorBoard event file (for tests and demos; CRCs are not checked on read)."""

    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num, wire, payload):
        key = varint((num << 3) | wire)
        if wire == 2:
            return key + varint(len(payload)) + payload
        return key + payload

    with open(path, "wb") as f:
        for s, v in zip(steps, values):
            value = field(1, 2, tag.encode()) + field(2, 5, struct.pack("<f", float(v)))
            event = field(1, 1, struct.pack("<d", 0.0)) + field(2, 0, varint(int(s))) + field(5, 2, field(1, 2, value))
            f.write(struct.pack("<Q", len(event)) + b"\0\0\0\0" + event + b"\0\0\0\0")


def detect_reader(path) -> str:
    p = Path(path)
    name = p.name
    if p.is_dir():
        if (p / "trainer_state.json").exists():
            return "hf"
        if (p / "metrics").is_dir():
            return "mlflow"
        if list(p.glob("events.out.tfevents.*")):
            return "tensorboard"
    if name == "trainer_state.json":
        return "hf"
    if name.startswith("events.out.tfevents"):
        return "tensorboard"
    if p.suffix in (".jsonl", ".json"):
        return "jsonl"
    if p.suffix in (".csv", ".tsv"):
        return "csv"
    raise DataError(f"cannot tell what kind of log {path} is; pass --reader one of {', '.join(available_readers())}")


#: columns that name the run of each row in a table of several runs' curves (W&B exports, a curves table)
RUN_NAMES = ("run", "run_id", "run_name", "Name")  # Name: a W&B table export


def read_log(path, reader: str = "auto", columns=None, run: str | None = None) -> pd.DataFrame:
    """One run's logged points (``step``, ``loss``, ``tokens``) from a log of any registered kind.

    A table holding several runs (a ``run``/``run_id``/``run_name``/``Name`` column, or one mapped with ``--columns
    run=...``) is refused unless ``run`` names the one to read: read as one run, its curves would look like
    one run restarting over and over."""
    if not Path(path).exists():
        raise DataError(f"no such log: {path}")
    name = detect_reader(path) if reader == "auto" else reader
    if name not in _READERS:
        raise DataError(f"unknown reader {name!r}; use one of {', '.join(available_readers())}")
    try:
        df = _READERS[name](path, columns)
    except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise DataError(f"cannot read {path} with the {name} reader: {exc.strerror} ({exc.filename})") from None
    if df.empty:  # nothing logged yet (a header, an empty file): a follower waits, a one-off check says so
        return df.drop(columns="run", errors="ignore")
    if "run" not in df.columns:
        if run is not None:
            raise DataError(f"{path} has no run column ({', '.join(RUN_NAMES)}) to pick run {run!r} from; it is one "
                            "run's log (drop --run)")
        return df
    df = df[df["run"].notna()]  # rows that name no run belong to none
    runs = list(dict.fromkeys(df["run"]))
    if run is None:
        if len(runs) > 1:
            shown = ", ".join(map(str, runs[:5])) + (f", ... ({len(runs)} in all)" if len(runs) > 5 else "")
            raise DataError(f"{path} holds {len(runs)} runs ({shown}): watch one at a time with --run NAME")
        return df.drop(columns="run")
    if run not in runs:
        raise DataError(f"no run {run!r} in {path}; it holds {', '.join(map(str, runs[:10]))}"
                        f"{' ...' if len(runs) > 10 else ''}")
    attrs = dict(df.attrs)
    out = df[df["run"] == run].drop(columns="run").reset_index(drop=True)
    out.attrs.update(attrs)
    return out
