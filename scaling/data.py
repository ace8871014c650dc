"""Reading and validating run tables.

A run table is a pandas DataFrame with one row per training run and columns named
as the laws expect them: ``N`` (parameters), ``D`` (tokens), ``C`` (FLOPs),
``loss`` (final loss in nats per token), plus whatever else the user keeps.
Everything here raises :class:`~scaling.errors.DataError` with a message that
names the problem and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DataError, ScalingWarning

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

#: column -> what it is, for error messages
KNOWN_COLUMNS = {
    "N": "parameter count",
    "D": "training tokens",
    "C": "training FLOPs",
    "U": "unique tokens",
    "S": "optimizer steps",
    "loss": "final loss (nats/token)",
}


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``"N=Model Size,C=Training FLOP"`` into ``{"N": "Model Size", ...}``."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    out = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DataError(f"--columns entry {part!r} is not NAME=COLUMN; write e.g. --columns N=params,loss=val_loss")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, with a clear error if that fails."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".gz":  # name.csv.gz and the like: pandas decompresses
        suffix = Path(path.stem).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                return pd.read_parquet(path)
            except ImportError as exc:
                raise DataError("reading Parquet needs pyarrow: pip install 'scaling[parquet]'") from exc
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", comment="#")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl")
    except DataError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file and the reason
        raise DataError(f"could not read {path}: {exc}") from exc
    raise DataError(f"unsupported file type {suffix!r} for {path}; use .csv, .parquet or .jsonl")


def prepare(data: pd.DataFrame | str | Path, required: Iterable[str], *,
            columns: str | Mapping[str, str] | None = None, flops_per_token_param: float = 6.0,
            drop_highest_loss: int = 0, dropna: bool = False, target: str = "loss",
            nonnegative: tuple[str, ...] = ()) -> pd.DataFrame:
    """Return a clean copy of ``data`` holding the ``required`` columns.

    Renames columns per ``columns`` (law name -> file column), derives ``D = C /
    (6 N)`` or ``C = 6 N D`` when one is missing, and checks that every required
    value is finite and positive.
    """
    df = read_table(data) if isinstance(data, (str, Path)) else data
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame or a file path, got {type(df).__name__}")
    df = df.copy()
    mapping = parse_columns(columns)
    missing_src = [v for v in mapping.values() if v not in df.columns]
    if missing_src:
        raise DataError(f"--columns names {missing_src} but the table has columns {list(df.columns)}")
    df = df.rename(columns={v: k for k, v in mapping.items()})
    required = list(required)
    k = flops_per_token_param
    if "D" in required and "D" not in df.columns and {"C", "N"} <= set(df.columns):
        df["D"] = df["C"] / (k * df["N"])
    if "C" in required and "C" not in df.columns and {"N", "D"} <= set(df.columns):
        df["C"] = k * df["N"] * df["D"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        what = ", ".join(f"{c} ({KNOWN_COLUMNS.get(c, c)})" for c in missing)
        raise DataError(
            f"missing column(s) {what}; the table has {list(df.columns)}. "
            f"Map yours with --columns, e.g. --columns {missing[0]}=<your column>"
        )
    for c in required:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad_text = vals.isna() & df[c].notna()
        if bad_text.any():
            raise DataError(f"column {c!r} has non-numeric values, e.g. {df.loc[bad_text, c].iloc[0]!r}")
        df[c] = vals.astype(float)
    nan = df[required].isna().any(axis=1) | ~np.isfinite(df[required]).all(axis=1)
    if nan.any():
        if not dropna:
            cols = [c for c in required if (df[c].isna() | ~np.isfinite(df[c])).any()]
            raise DataError(
                f"{int(nan.sum())} row(s) have NaN or infinite values in {cols} (first at row "
                f"{int(np.flatnonzero(nan.to_numpy())[0])}); remove them or pass dropna=True (--dropna)"
            )
        df = df.loc[~nan]
    for c in required:
        bad = df[c] < 0 if c in nonnegative else df[c] <= 0
        if bad.any():
            raise DataError(
                f"column {c!r} must be positive, but {int(bad.sum())} row(s) are <= 0 "
                f"(e.g. {df.loc[bad, c].iloc[0]!r}); scaling laws work on logs of these values"
            )
    if drop_highest_loss:
        if drop_highest_loss < 0 or drop_highest_loss >= len(df):
            raise DataError(f"drop_highest_loss={drop_highest_loss} must be in [0, {len(df) - 1}]")
        df = df.sort_values(target, kind="stable").iloc[:-drop_highest_loss]
    if target in df.columns and target == "loss":
        check_loss_units(df[target].to_numpy())
    return df.reset_index(drop=True)


def check_loss_units(loss: np.ndarray) -> None:
    """Warn when losses do not look like cross-entropy in nats."""
    loss = np.asarray(loss, float)
    if loss.size and np.nanmax(loss) > 15:
        warnings.warn(
            f"losses up to {np.nanmax(loss):.3g} exceed 15 nats, more than the log of any common "
            "vocabulary size: is this perplexity rather than loss? Pass log(perplexity).",
            ScalingWarning, stacklevel=3,
        )


def read_json_file(path, what: str, hint: str = ""):
    """Parse a JSON file the package wrote (a fit, a plan), with one clear error if that fails."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"no such {what}: {path}{hint}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not a {what} (invalid JSON: {exc})") from None


def load_chinchilla(drop_highest_loss: int = 0) -> pd.DataFrame:
    """Hoffmann et al. 2022, Figure 4, as extracted by Besiroglu et al. 2024 (245 runs).

    Besiroglu et al. fit on the 240 rows left after dropping the 5 highest losses
    (``drop_highest_loss=5``).
    """
    df = read_table(DATA_DIR / "chinchilla_besiroglu2024.csv")
    return prepare(df, ["N", "D", "C", "loss"], drop_highest_loss=drop_highest_loss)
