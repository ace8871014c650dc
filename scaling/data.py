"""Reading and validating run tables.

A run table is a pandas DataFrame with one row per training run and columns named
as the laws expect them: ``N`` (parameters), ``D`` (tokens), ``C`` (FLOPs),
``loss`` (final loss in nats per token), plus whatever else the user keeps.
Everything here raises :class:`~scaling.errors.DataError` with a message that
names the problem and the fix.
"""

from __future__ import annotations

import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DataError, ScalingWarning


def _shipped(folder: str) -> Path:
    """A folder of files shipped inside the package, found through ``importlib.resources``.

    A wheel installs the package as a directory, so this is a real path (pandas and YAML
    readers take it as is); in a clone, ``data/*.csv`` and ``sweeps/`` link here.
    """
    return Path(str(resources.files("scaling").joinpath(folder)))


#: the datasets shipped with the package (``scaling/datasets``): chinchilla_besiroglu2024.csv, muennighoff2023_c4.csv
DATA_DIR = _shipped("datasets")
#: the sweep definitions shipped with the package (``scaling/sweep_defs``; ``sweeps/`` in a clone)
SWEEPS_DIR = _shipped("sweep_defs")


def sweep_definition(name: str) -> Path:
    """The path of a shipped sweep definition: ``sweep_definition("quickstart")`` -> ``.../quickstart.yaml``."""
    path = SWEEPS_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        shipped = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise DataError(f"no shipped sweep definition {name!r}; the package has {', '.join(shipped)}")
    return path


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


def first_row(mask: pd.Series) -> int:
    """The table's own row number (from 0) of the first True in ``mask``: its index label where the index holds the
    rows as read (a subset such as one method's rows keeps those labels), else its position."""
    hit = mask.to_numpy(bool)
    if pd.api.types.is_integer_dtype(mask.index) and mask.index.is_unique:
        return int(mask.index[hit][0])
    return int(np.flatnonzero(hit)[0])


def require_rows(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` itself, or one clear error when it has no rows."""
    if len(df) == 0:
        raise DataError(f"the table has no rows (only the header: {list(df.columns)})")
    return df


def rows_where(df: pd.DataFrame, expr: str, flag: str = "--where") -> np.ndarray:
    """Boolean mask of the rows for which ``expr`` (a pandas ``DataFrame.eval`` comparison over the table's
    columns, e.g. ``'N > 2.5e9'`` or ``'D_pretrain == 4e6 and rank == 4'``) holds; one clear error otherwise."""
    try:
        mask = df.eval(expr)
    except Exception as exc:  # pandas raises many kinds; the user needs the expression and the columns
        raise DataError(f"could not evaluate {flag} {expr!r} ({exc}); columns are {list(df.columns)}") from None
    if not isinstance(mask, pd.Series) or mask.dtype != bool:
        raise DataError(f"{flag} {expr!r} must be a comparison such as 'N > 2.5e9'")
    return mask.to_numpy()


def select_rows(data, expr: str, flag: str = "--where") -> pd.DataFrame:
    """The rows of a table (a DataFrame or a file) for which ``expr`` holds (see :func:`rows_where`)."""
    df = read_table(data)
    kept = df[rows_where(df, expr, flag)].reset_index(drop=True)
    if kept.empty:
        raise DataError(f"no row of the {len(df):,} has {expr} ({flag})")
    return kept


def map_columns(df: pd.DataFrame, columns) -> pd.DataFrame:
    """``df`` with its columns renamed to the law's names per ``columns`` (law name -> yours; names match with
    surrounding spaces stripped); a name that is not a column is an error, and a mapped name replaces a column
    already called that (``D=C`` on a table that has a D)."""
    mapping = parse_columns(columns)
    if not mapping:
        return df
    stripped = {c.strip(): c for c in df.columns if isinstance(c, str)}
    mapping = {k: v if v in df.columns else stripped.get(v, v) for k, v in mapping.items()}
    missing_src = [v for v in mapping.values() if v not in df.columns]
    if missing_src:
        raise DataError(f"--columns names {missing_src} but the table has columns {list(df.columns)}")
    shadowed = [k for k, v in mapping.items() if k in df.columns and k != v and k not in mapping.values()]
    return df.drop(columns=shadowed).rename(columns={v: k for k, v in mapping.items()})


def read_table(path: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, with a clear error if that fails (a DataFrame: a copy)."""
    if isinstance(path, pd.DataFrame):
        return path.copy()
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if path.is_dir():
        tables = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".csv", ".parquet", ".jsonl", ".gz"))
        raise DataError(f"{path} is a folder, not a table" + (f"; it holds {', '.join(tables[:4])}" if tables else ""))
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
            return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl")
    except DataError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file and the reason
        raise DataError(f"could not read {path}: {exc}") from exc
    raise DataError(f"unsupported file type {suffix!r} for {path}; use .csv, .parquet or .jsonl")


#: delimiters tried when a file's header does not split on the one its name implies
_DELIMITERS = (",", "\t", ";", "|")


def _open_text(path: Path):
    import gzip

    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", errors="replace")
    return open(path, errors="replace")


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    """Read a delimited text table.

    Leading lines that start with ``#`` are comments (the package's own data files
    describe their source that way), except a ``#`` followed by the delimiter, which
    is a header naming a column "#". A ``#`` anywhere else is data (hex colours, notes
    like "rerun #2"). When the header does not split on ``sep`` but does on a tab,
    semicolon or bar, that is the delimiter (a semicolon file with decimal commas too).
    """
    skip, head = 0, []
    with _open_text(path) as f:
        for line in f:
            s = line.lstrip()
            if not head and s.startswith("#") and not any(s[1:2] == d for d in _DELIMITERS):
                skip += 1
                continue
            if line.strip():
                head.append(line.rstrip("\r\n"))
            if len(head) >= 6:
                break
    if not head:
        raise DataError(f"{path} has no header and no rows")
    decimal = "."
    sep = sniff_delimiter(head[0], sep)
    if sep == ";" and any(re.search(r"\d,\d", line) for line in head[1:]):
        decimal = ","
    try:
        df = pd.read_csv(path, sep=sep, skiprows=skip, decimal=decimal)
    except pd.errors.ParserError as exc:
        raise DataError(f"could not read {path} as a {_SEP_NAMES.get(sep, repr(sep))}-separated table: {exc}") from None
    if df.shape[1] == 1 and len(head) > 1:
        raise DataError(f"{path}: the header {head[0][:80]!r} does not split into columns on any of "
                        f"comma, tab, semicolon or bar; write one column per field")
    # "N, D, loss" headers: names with surrounding spaces match --columns and the laws' names
    df.columns = [c.strip() if isinstance(c, str) else c for c in df.columns]
    return df


def sniff_delimiter(header: str, sep: str = ",") -> str:
    """``sep``, unless the header does not split on it but does on a tab, semicolon or bar."""
    if header.count(sep) == 0:
        counts = {d: header.count(d) for d in _DELIMITERS if d != sep}
        best = max(counts, key=counts.get)
        if counts[best] > 0:
            return best
    return sep


_SEP_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "bar"}


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
    df = require_rows(df.copy())
    df = map_columns(df, columns)
    required = list(required)
    k = flops_per_token_param
    derived_D = "D" in required and "D" not in df.columns and {"C", "N"} <= set(df.columns)
    if derived_D:
        df["D"] = pd.to_numeric(df["C"], errors="coerce") / (k * pd.to_numeric(df["N"], errors="coerce"))
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
                f"{first_row(nan)}, counting the table's rows from 0); remove them or pass "
                "dropna=True (--dropna)"
            )
        warnings.warn(f"{int(nan.sum())} of {len(df)} row(s) have NaN or infinite values in {required} and are left "
                      f"out (dropna; the first at row {first_row(nan)})", ScalingWarning, stacklevel=3)
        df = df.loc[~nan]
    for c in required:
        bad = df[c] < 0 if c in nonnegative else df[c] <= 0
        if bad.any():
            raise DataError(
                f"column {c!r} must be positive, but {int(bad.sum())} row(s) are <= 0 "
                f"(e.g. {float(df.loc[bad, c].iloc[0]):g}); scaling laws work on logs of these values"
            )
    for c in required:
        if c != target:
            check_isolated(df[c], c)
    check_counts(df[[c for c in ("N", "D") if c in required]], derived_D)
    df = _drop_exact_duplicates(df, stacklevel=4)
    if drop_highest_loss:
        if drop_highest_loss < 0 or drop_highest_loss >= len(df):
            raise DataError(f"drop_highest_loss={drop_highest_loss} must be in [0, {len(df) - 1}]")
        df = df.sort_values(target, kind="stable").iloc[:-drop_highest_loss]
    if target in df.columns and target == "loss":
        check_loss_units(df[target].to_numpy())
    return df.reset_index(drop=True)


def _drop_exact_duplicates(df: pd.DataFrame, stacklevel: int = 3) -> pd.DataFrame:
    dup = df.duplicated(keep="first")
    if dup.any():
        warnings.warn(
            f"{int(dup.sum())} row(s) repeat another row exactly (every column equal, e.g. row "
            f"{int(np.flatnonzero(dup.to_numpy())[0])}): counted once, since copies are not independent runs and "
            "would make the intervals too narrow (replicate runs differ in their loss or a seed column)",
            ScalingWarning, stacklevel=stacklevel)
        df = df.loc[~dup]
    return df


# ------------------------------------------------------------------ replicates
#: columns of a sweep's runs table that are outcomes of one run, not settings: they differ between the seeds
#: of a cell, so they do not define it (and have no meaning for a mean over seeds)
RUN_OUTCOMES = ("run_id", "eval_se", "eval_tokens", "status", "tokens_per_s", "error")


def near_codes(values: pd.Series, rtol: float = 1e-9) -> np.ndarray:
    """Integer labels of a column's values, equal for values within ``rtol`` (relative) of each other: the same
    setting written twice (D 1e8 and 1e8 + 1e-1, a float that went through text). Missing values share one label;
    text is compared exactly."""
    num = pd.to_numeric(values, errors="coerce")
    if not (num.notna() | values.isna()).all():  # text: exact
        return pd.factorize(values.astype(object).where(values.notna(), None))[0]
    v = num.to_numpy(float)
    codes = np.full(v.size, -1, int)
    ok = np.isfinite(v)
    order = np.argsort(v[ok], kind="stable")
    sv = v[ok][order]
    labels = np.empty(sv.size, int)
    k, start = -1, None
    for i, x in enumerate(sv):
        if start is None or abs(x - start) > rtol * max(abs(x), abs(start)):
            k, start = k + 1, x
        labels[i] = k
    idx = np.flatnonzero(ok)[order]
    codes[idx] = labels
    return codes  # -1: missing (and inf)


def cell_codes(df: pd.DataFrame, by: list, rtol: float = 1e-9) -> np.ndarray:
    """One label per row: rows whose ``by`` columns are near-equal (:func:`near_codes`) share it; labels in
    order of first appearance."""
    if not by:
        return np.zeros(len(df), int)
    cols = np.column_stack([near_codes(df[c], rtol) for c in by])
    return pd.factorize(pd.Series([tuple(r) for r in cols], index=df.index))[0]


def cell_columns(table: pd.DataFrame, inputs: Iterable[str] = (), columns=None, target: str = "loss",
                 seed: str = "seed") -> tuple[list[str], list[str]]:
    """(the columns that define a cell of ``table`` for a law with ``inputs``, the other columns to carry).

    A cell is one value of each column the law reads (its ``inputs``, and ``N``, ``D``, ``C``, ``U``, ``S`` and a
    ``budget`` where the table has them) and of each hyperparameter (:data:`HPARAM_COLUMNS`), named as the table
    names them (``columns``: the law's names -> the table's). Every other column but the target, the seed and
    the per-run outcomes is carried: pass it as ``replicate_means(..., keep=)``, which keeps it where a cell's
    runs agree on it and leaves it out where they differ (a wall time). For ``replicate_means(by=)``."""
    mapping = parse_columns(columns)
    col = [mapping.get(k, k) for k in (*inputs, "N", "D", "C", "U", "S", "budget", *HPARAM_COLUMNS)]
    by = list(dict.fromkeys(c for c in col if c in table.columns and c not in (target, seed)))
    keep = [c for c in table.columns if c not in by and c not in (target, seed) and c not in RUN_OUTCOMES]
    return by, keep


def replicate_means(df: pd.DataFrame, target: str = "loss", by: Iterable[str] | None = None,
                    seed: str = "seed", keep: Iterable[str] = (), rtol: float = 1e-9) -> pd.DataFrame:
    """One row per cell: the mean of ``target`` over the cell's seeds, its spread and how many seeds.

    Parameters
    ----------
    df : a run table with one row per run (every seed).
    target : the column averaged (``loss``).
    by : the columns that define a cell. Default: every column except ``target``, ``seed`` and the per-run
        outcomes of a sweep's runs table (:data:`RUN_OUTCOMES`), so on a sweep's export a cell is one setting
        of everything (N, D, lr, batch, warmup, ...) and its rows differ only in the seed. Numbers within
        ``rtol`` (relative) of each other are one value.
    seed : the seed column, dropped from the result. Each distinct seed counts once: several rows of one seed
        in a cell (the same run trained twice) are averaged into that seed's value first, not counted as
        replicates.
    keep : more columns to carry into the result where they are constant within every cell (the first row's
        value); a column that differs between the rows of a cell is left out.

    Returns
    -------
    DataFrame
        The ``by`` (and kept) columns and ``target`` in the table's order, then ``{target}_sd`` (the sample
        standard deviation over seeds, NaN for one seed) and ``n_seeds`` (the distinct seeds with a finite
        ``target``; a failed or diverged run has none and does not count). Cells in order of first appearance.
        Rows that repeat another exactly are counted once, with the warning :func:`prepare` gives.
        ``attrs["n_nonfinite"]``: the runs left out of a cell's mean for a NaN or infinite ``target``, in cells
        that have a finite one; ``attrs["empty_cells"]``: the cells with none (their mean is NaN).
    """
    if target not in df.columns:
        raise DataError(f"no column {target!r} to average over seeds; the table has {list(df.columns)}")
    if by is None:
        by = [c for c in df.columns if c not in (target, seed) and c not in RUN_OUTCOMES]
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise DataError(f"replicate_means: by names {missing}, not columns of the table {list(df.columns)}")
    df = _drop_exact_duplicates(df, stacklevel=3)
    y = pd.to_numeric(df[target], errors="coerce")
    bad = y.isna() & df[target].notna()
    if bad.any():
        raise DataError(f"column {target!r} has non-numeric values, e.g. {df.loc[bad, target].iloc[0]!r}")
    y = y.where(np.isfinite(y.to_numpy(float)))
    code = pd.Series(cell_codes(df, by, rtol), index=df.index)
    if seed in df.columns:  # one value per (cell, seed): rows of one seed are one replicate
        s = df[seed].astype(object).where(df[seed].notna(), None)
        s = s.where(s.notna(), pd.Series([("row", i) for i in range(len(df))], index=df.index))
        per_seed = y.groupby([code, s.map(repr)], sort=False).mean()
        cell_of = per_seed.index.get_level_values(0)
        stats = per_seed.groupby(cell_of).agg(["mean", "std", "count"])
    else:
        stats = y.groupby(code).agg(["mean", "std", "count"])
    stats = stats.reindex(range(int(code.max()) + 1))
    first = ~code.duplicated()
    keep = [c for c in keep if c in df.columns and c not in by and c not in (target, seed)]
    kept = [c for c in keep if (df.groupby(code)[c].nunique(dropna=False) <= 1).all()]
    out = df.loc[first, by + kept].reset_index(drop=True)
    out[target] = stats["mean"].to_numpy()
    out = out[[c for c in df.columns if c in by or c in kept or c == target]]
    out[f"{target}_sd"] = stats["std"].to_numpy()
    out["n_seeds"] = stats["count"].fillna(0).to_numpy().astype(int)
    empty = out["n_seeds"].to_numpy() == 0
    nonfinite = y.isna().groupby(code).sum().reindex(range(len(out))).to_numpy()
    out.attrs["n_nonfinite"] = int(nonfinite[~empty].sum())
    out.attrs["empty_cells"] = int(empty.sum())
    out.attrs["dropped"] = [c for c in keep if c not in kept]
    return out


def replicate_note(means: pd.DataFrame, n_runs: int, target: str = "loss", law=None,
                   nonfinite: int | None = None) -> str:
    """One paragraph on what averaging did and how large the seed-to-seed scatter is, for a fit's notes.

    The scatter is pooled over the cells with two or more seeds, relative to the loss; a cell mean of k seeds is
    known to about that over sqrt(k). With a fitted ``law`` that predicts the loss, its residuals (logs of the
    means) are compared with that: residuals several times larger are misfit of the law, not noise; several
    times smaller, a law that follows the means more closely than their noise allows (few cells per parameter).
    ``nonfinite``: runs left out of their cells' means for a NaN loss (default: ``means.attrs["n_nonfinite"]``).
    """
    k = means["n_seeds"].to_numpy()
    seeds = f"{k.min()}" if k.min() == k.max() else f"{k.min()}-{k.max()}"
    text = f"averaged {seeds} seeds per cell ({n_runs} runs -> {len(means)} cells)"
    nonfinite = means.attrs.get("n_nonfinite", 0) if nonfinite is None else nonfinite
    if nonfinite:
        text += (f"; {nonfinite} run(s) with a NaN or infinite {target} (diverged or failed) left out of their "
                 "cells' means")
    rep = means[(means["n_seeds"] >= 2) & means[f"{target}_sd"].notna()]
    if rep.empty:
        return text
    dof = rep["n_seeds"] - 1
    rel = rep[f"{target}_sd"] / rep[target]
    sd = float(np.sqrt((dof * rep[f"{target}_sd"] ** 2).sum() / dof.sum()))
    sd_rel = float(np.sqrt((dof * rel ** 2).sum() / dof.sum()))
    se_rel = sd_rel / np.sqrt(rep["n_seeds"].mean())
    text += (f"; seed-to-seed sd of the {target} {sd:.4g} ({100 * sd_rel:.2g}% of it, pooled over {len(rep)} cells), "
             f"so a cell mean is known to about {100 * se_rel:.2g}%")
    r = getattr(law, "residuals_", None)
    if law is not None and getattr(law, "predicts_loss", False) and r is not None and np.size(r) >= 3 and se_rel > 0:
        r = np.asarray(r, float)
        scale = float(1.4826 * np.median(np.abs(r - np.median(r))))
        ratio = scale / se_rel
        if ratio > 2:
            verdict = f"{ratio:.1f}x the seed noise: the law misses structure in the means"
        elif ratio >= 0.5:
            verdict = f"about the seed noise ({ratio:.2g}x)"
        else:
            verdict = (f"below the seed noise ({ratio:.2g}x): the law follows the means more closely than their "
                       "noise allows (few cells for its parameters?), so its intervals may be too narrow")
        text += f"; the fit's residuals on the means: {100 * scale:.2g}% typical, {verdict}"
    return text


#: the hyperparameter columns of a sweep's runs table, in the order a setting is written
HPARAM_COLUMNS = ("lr", "batch", "warmup")


def settings_at_edge(df: pd.DataFrame, best: pd.DataFrame, cell: Iterable[str] | None = None) -> list[str]:
    """For each hyperparameter of :func:`best_hparams`'s table ``best``: the cells whose best value is the smallest
    or the largest of 3 or more values that cell tried, where the optimum may lie beyond the grid. One sentence per
    (setting, end) with any."""
    cell = list(cell) if cell is not None else ["N", "D_grid" if "D_grid" in df.columns else "D"]
    out = []
    if "loss" in df.columns:  # what was tried is what finished: a pending or failed run has no loss to compare
        df = df[np.isfinite(pd.to_numeric(df["loss"], errors="coerce").to_numpy(float))]
    chosen = best.set_index(cell)
    for col in [c for c in HPARAM_COLUMNS if c in best.columns and c in df.columns]:
        tried = df.dropna(subset=[col]).groupby(cell)[col].agg(lambda v: np.unique(v.to_numpy(float)))
        for end, pick in (("smallest", 0), ("largest", -1)):
            hits = [(k, v[pick]) for k, v in tried.items() if len(v) >= 3 and k in chosen.index
                    and float(chosen.loc[k, col]) == v[pick]]
            if hits:
                vals = sorted({float(v) for _, v in hits})
                axis = {"batch": "grid.batch_tokens"}.get(col, f"grid.{col}")
                out.append(f"in {len(hits)} of {len(best)} cell(s) the best {col} is the {end} tried "
                           f"({', '.join(f'{v:g}' for v in vals)}): the optimum may lie beyond the grid; extend {axis}")
    return out


def best_hparams(df: pd.DataFrame, target: str = "loss", cell: Iterable[str] | None = None,
                 settings: Iterable[str] | None = None, seed: str = "seed") -> pd.DataFrame:
    """Per cell, the hyperparameter setting with the lowest mean ``target`` over its seeds.

    Parameters
    ----------
    df : a run table with one row per run (every seed), such as ``scaling sweep export``'s.
    cell : the columns of a cell; default ``N`` and ``D_grid`` (the grid's D, which the runs of a cell share
        when a batch axis rounds their D apart), or ``N`` and ``D`` without it.
    settings : the hyperparameter columns; default those of ``lr``, ``batch``, ``warmup`` the table has.

    Returns
    -------
    DataFrame
        One row per cell with a finite mean, sorted by cell: the cell and setting columns, ``target`` (the mean
        over seeds; ties go to the setting listed first), ``{target}_sd``, ``n_seeds``, ``n_settings`` (the
        settings the cell tried) and ``gap`` (the runner-up's mean minus the best's; NaN with one setting):
        a gap well below ``{target}_sd`` / sqrt(n_seeds) means the seeds cannot tell the two apart.
    """
    cell = list(cell) if cell is not None else ["N", "D_grid" if "D_grid" in df.columns else "D"]
    settings = list(settings) if settings is not None else [c for c in HPARAM_COLUMNS if c in df.columns]
    if not settings:
        raise DataError(f"no hyperparameter columns ({', '.join(HPARAM_COLUMNS)}) in the table {list(df.columns)}")
    means = replicate_means(df, target, by=cell + settings, seed=seed)
    means = means[np.isfinite(means[target].to_numpy(float))].reset_index(drop=True)
    if means.empty:
        raise DataError(f"no run has a finite {target}: nothing to compare")
    g = means.groupby(cell, sort=True)[target]
    best = means.loc[g.idxmin().to_numpy()].reset_index(drop=True)
    n = g.size().to_numpy()
    second = g.apply(lambda v: np.sort(v.to_numpy())[1] if len(v) > 1 else np.nan).to_numpy()
    best = best[cell + settings + [target, f"{target}_sd", "n_seeds"]]
    return best.assign(n_settings=n, gap=second - best[target].to_numpy())


#: a value this many decades away from every other value of its column is a typo, not a run
ISOLATED_ERROR_DECADES = 6.0


def check_isolated(values: pd.Series, name: str) -> None:
    """Refuse a value far from all others in log scale (N = 1e300 for 1e8): it cannot be a real run.

    A value more than ``ISOLATED_ERROR_DECADES`` decades beyond the rest of its column, and
    further than three times the span of the rest, is an error; one over two decades away (and
    twice the span) gets a warning, since it alone sets the fitted range and so how far later
    predictions count as extrapolation.
    """
    v = values.to_numpy(float)
    pos = v[v > 0]
    u = np.unique(np.log10(pos))
    if u.size < 4:
        return
    for end, gap, rest_span in (("above", u[-1] - u[-2], u[-2] - u[0]), ("below", u[1] - u[0], u[-1] - u[1])):
        val = 10 ** (u[-1] if end == "above" else u[0])
        rows = np.flatnonzero(np.isclose(np.log10(np.where(v > 0, v, np.nan)), np.log10(val)))
        where = f"{name} = {val:.3g} (row {int(rows[0]) if rows.size else '?'})"
        lo, hi = 10 ** (u[0] if end == "above" else u[1]), 10 ** (u[-2] if end == "above" else u[-1])
        if gap > ISOLATED_ERROR_DECADES and gap > 3 * rest_span:
            raise DataError(f"{where} lies {gap:.0f} decades {end} every other {name} ({lo:.3g} to {hi:.3g}): "
                            "a typo? Fix or remove that row")
        if gap > 2 and gap > 2 * rest_span:
            warnings.warn(f"{where} lies {gap:.1f} decades {end} every other {name} ({lo:.3g} to {hi:.3g}): check it; "
                          f"that one run sets the fitted range of {name}", ScalingWarning, stacklevel=4)


def check_counts(df: pd.DataFrame, derived_D: bool = False) -> None:
    """Warn when N and D do not look like counts of parameters and of tokens (N in billions, D in millions of
    tokens, C in GPU-hours): the laws' constants and every allocation would be off by powers of ten, silently."""
    from_c = " (D was worked out as C / 6N: is C in FLOPs?)" if derived_D else ""
    if "N" in df and len(df) and df["N"].max() < 1e3:
        warnings.warn(f"the largest N is {df['N'].max():.3g}: the laws take N as a count of parameters; is it in "
                      "millions or billions (7 for a 7B model)?", ScalingWarning, stacklevel=4)
    if "D" in df and len(df) and df["D"].max() < 1e4:
        warnings.warn(f"the largest D is {df['D'].max():.3g} tokens: the laws take D as a count of tokens; is it in "
                      f"millions or billions?{from_c}", ScalingWarning, stacklevel=4)
    elif {"N", "D"} <= set(df.columns) and len(df):
        ratio = float(np.median(df["D"] / df["N"]))
        if not 1e-2 <= ratio <= 1e5:
            warnings.warn(f"D / N, tokens per parameter, has median {ratio:.3g} (real runs lie between about 1 and "
                          f"10,000): are N and D both plain counts?{from_c}", ScalingWarning, stacklevel=4)


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


def fit_cell_means(spec, data, columns=None, *, average: bool = True, dropna: bool = False, drop_highest_loss: int = 0,
                   switch: str | None = None):
    """``spec`` fitted as ``scaling fit`` fits it: a table with a seed column and replicated cells on the per-cell
    means over seeds (:func:`seed_means`), each note and the replicate scatter as a ``ScalingWarning`` (``switch``:
    the caller's way to fit every run, named at the end of it); every run otherwise."""
    data, cols, averaged, notes = seed_means(data, spec, columns, average=average, dropna=dropna)
    for note in notes:
        warnings.warn(f"{spec.name}: {note}", ScalingWarning, stacklevel=3)
    result = spec.fit(data, columns=cols, drop_highest_loss=drop_highest_loss, dropna=dropna)
    if averaged is not None:
        target = parse_columns(columns).get(spec.target, spec.target)
        note = replicate_note(data, averaged, target=target, law=result)
        warnings.warn(f"{spec.name}: {note}" + (f"; {switch} fits every run" if switch else ""), ScalingWarning,
                      stacklevel=3)
    return result


def seed_means(data, law, columns=None, *, average: bool = True, dropna: bool = False):
    """What ``scaling fit`` and ``scaling.fit`` fit for a final-loss ``law`` (a class or a spec):
    ``(data, columns, runs averaged or None, notes)``.

    A table with a ``seed`` column whose cells were run with several seeds is fitted on the per-cell means
    (unless ``average`` is False: --no-average-seeds); an hparams fit on a
    sweep's runs table takes each cell at the grid's D (``D_grid``), which its runs share when a batch axis
    rounds their D apart (and a table with D_grid but no D, as --best-hparams writes, is at the grid's D).

    A cell is one value of each column the law reads (its inputs, N, D, C, U, S where the table has them, a
    ``budget``, and a law's own ``cell_columns`` such as finetune's method and rank) and of each hyperparameter
    (lr, batch, warmup); numbers within 1e-9 (relative) are one value. A table that lacks one of the law's
    inputs is returned as it is (its fit names the missing column).
    Other columns are carried along where a cell's runs agree on them and left out where they differ
    (a wall time)."""
    cls = law if isinstance(law, type) else type(law)
    notes: list[str] = []
    if cls.curve_law or cls.target != "loss":
        return data, columns, None, notes
    mapping = parse_columns(columns)
    seed, target = mapping.pop("seed", None), mapping.get(cls.target, cls.target)
    table = read_table(data) if isinstance(data, (str, Path)) else data
    if not isinstance(table, pd.DataFrame):
        return data, columns, None, notes
    if seed is None:  # a seed column by any capitalisation (Seed, SEED): one that replicates cells is never ignored
        named = [c for c in table.columns if isinstance(c, str) and c.strip().lower() in ("seed", "run_seed")]
        seed = "seed" if "seed" in table.columns else named[0] if len(named) == 1 else "seed"
        if seed not in table.columns and len(named) > 1:
            notes.append(f"columns {named} could each name the seed, so none is used and every run is fitted as "
                         "its own: name the seed with --columns seed=<column> (Python: columns='seed=...')")
    require_rows(table)
    changed = False
    if cls.name == "hparams" and "D_grid" in table.columns and not {"D", "C"} & set(mapping):
        if "D" not in table.columns:  # best_hparams.csv: one row per cell, at the grid's D
            table = table.assign(D=table["D_grid"])
            changed = True
        else:
            d_grid = table["D_grid"].notna() & (table["D_grid"] != table["D"])
            if d_grid.any():
                notes.append(f"{int(d_grid.sum())} run(s) trained a D rounded to whole batches; each cell is fitted "
                             "at the grid's D (column D_grid)")
                table = table.drop(columns=[c for c in ("C",) if c in table.columns]).assign(D=table["D_grid"])
                changed = True
    averaged = None
    inputs = law.inputs if not isinstance(law, type) else cls.inputs
    if any(mapping.get(c, c) not in table.columns for c in inputs):  # cells need every input: the fit names it
        return (table, mapping or None, None, notes) if changed else (data, columns, None, notes)
    if cls.name != "hparams":
        notes += _settings_within_cells(table, (*inputs, *getattr(cls, "cell_columns", ())), mapping, target)
    if seed in table.columns and target in table.columns:
        y = pd.to_numeric(table[target], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(y)
        if not average:
            if bad.any() and not dropna:
                raise DataError(
                    f"{int(bad.sum())} row(s) have NaN or infinite values in [{target!r}] (first at row "
                    f"{first_row(pd.Series(bad, index=table.index))}, counting the table's rows from 0; diverged or "
                    "failed runs?): "
                    "--no-average-seeds fits every run as it is, so remove them or pass --dropna to leave them out "
                    "(without --no-average-seeds, each cell's mean leaves out its NaN seeds)")
        else:
            by, keep = cell_columns(table, (*cls.inputs, *getattr(cls, "cell_columns", ())), mapping,
                                    target=target, seed=seed)
            code = cell_codes(table, by)
            means = replicate_means(table, target=target, by=by, seed=seed, keep=keep)
            if len(means) < len(table):
                notes += _note_cells(table, by, code, bad, seed, means, dropna)
                empty = means["n_seeds"].to_numpy() == 0
                if empty.any():  # --dropna (else _note_cells refused them): the cells go
                    attrs = dict(means.attrs)
                    means = means.loc[~empty].reset_index(drop=True)
                    means.attrs = attrs
                averaged, table, changed = len(table), means, True
            elif table[seed].nunique() > 1:
                notes.append(_why_not_averaged(table, by, seed))
    if not changed:
        return data, columns, None, notes
    return table, mapping or None, averaged, notes


def _settings_within_cells(table: pd.DataFrame, inputs, mapping: dict, target: str) -> list[str]:
    """A loss law fitted on a table whose cells (one value of each input) hold several learning rates or batch
    sizes fits the poor settings as if they were runs of the same model: say so once, and how to pick one
    setting per cell."""
    by = [c for c in dict.fromkeys(mapping.get(c, c) for c in inputs) if c in table.columns]
    if "D" in by and "D" not in mapping and "D_grid" in table.columns:  # a batch axis rounds a cell's D apart
        by = ["D_grid" if c == "D" else c for c in by]
    code = cell_codes(table, by, rtol=0.05)  # and C with it: sizes of a grid are further apart than 5%
    varying, cells, most = [], 0, 0
    for h in HPARAM_COLUMNS:
        col = mapping.get(h, h)
        if col not in table.columns or col in by or col == target:
            continue
        counts = pd.to_numeric(table[col], errors="coerce").groupby(code).nunique()
        if (counts > 1).any():
            varying.append(col)
            cells, most = max(cells, int((counts > 1).sum())), max(most, int(counts.max()))
    if not varying:
        return []
    return [f"{' and '.join(varying)} vary within {cells} of {int(code.max()) + 1} cell(s) of ({', '.join(by)}), up "
            f"to {most} values in one: every setting is fitted as a run of the same model, the poor ones too, which "
            "biases the law; fit each cell's best setting (`scaling sweep export NAME --best-hparams` writes "
            "best_hparams.csv; Python: scaling.data.best_hparams(table, settings=[...])) or keep one setting with "
            f"--where \"{varying[0]} == VALUE\""]


def _cell_name(table, by, rows) -> str:
    return ", ".join(f"{c}={table[c].iloc[rows[0]]:.4g}" if isinstance(table[c].iloc[rows[0]], (int, float, np.number))
                     else f"{c}={table[c].iloc[rows[0]]}" for c in by)


def _note_cells(table, by, code, bad, seed, means, dropna) -> list[str]:
    """Cells every seed of which diverged (an error naming them, or left out with ``dropna``), the columns that
    differ between a cell's seeds, and cells holding one seed twice: notes."""
    notes = []
    empty = [np.flatnonzero(code == k) for k in np.unique(code) if bad[code == k].all()]
    if empty:
        names = "; ".join(f"{_cell_name(table, by, rows)} (rows {', '.join(map(str, rows))} of the table)"
                          for rows in empty[:3]) + (f"; and {len(empty) - 3} more" if len(empty) > 3 else "")
        if not dropna:
            raise DataError(f"{len(empty)} cell(s) have no finite loss in any seed: {names}, counting the table's "
                            "rows from 0 (every run diverged or failed); remove them or pass --dropna (dropna=True) to fit the "
                            "other cells")
        notes.append(f"left out {len(empty)} cell(s) where every seed diverged or failed (--dropna): {names}")
    if means.attrs.get("dropped"):
        notes.append(f"column(s) {', '.join(means.attrs['dropped'])} differ between the seeds of a cell: left out "
                     "of the means")
    twice = pd.Series(1, index=table.index).groupby([code, table[seed].astype(str).to_numpy()]).size()
    n_twice = int(twice[twice > 1].index.get_level_values(0).nunique())
    if n_twice:
        notes.append(f"{n_twice} cell(s) hold several runs of one seed (the same setting run twice?): each seed is "
                     "counted once, as the mean of its runs")
    return notes


def _why_not_averaged(table, by, seed) -> str:
    """A table with several seeds in which no two runs share a cell: say which column keeps them apart (values
    that agree to 1% but not to 1e-9, as a D each seed rounded its own way), or that every run is its own cell."""
    coarse = pd.Series(cell_codes(table, by, rtol=1e-2))
    shared = coarse.duplicated(keep=False).to_numpy()
    for c in by:
        if not shared.any():
            break
        v = pd.to_numeric(table[c], errors="coerce")
        spread = v.groupby(coarse).agg(lambda x: x.max() / x.min() - 1 if x.min() > 0 else 0.0)
        if (spread > 1e-9).any():
            k = spread.idxmax()
            rows = np.flatnonzero(coarse.to_numpy() == k)[:2]
            vals = " and ".join(f"{table[c].iloc[r]!r}" for r in rows)
            return (f"not averaged over seeds: no two runs share a cell ({', '.join(by)}, equal within 1e-9); "
                    f"column {c} differs between runs that look like seeds of one cell (by up to {spread.max():.2g} "
                    f"relative: {vals} at rows {rows[0]} and {rows[1]}): make it one value per cell to fit the seeds' "
                    "means; every run is fitted as a point")
    return (f"not averaged over seeds: no two runs share a cell ({', '.join(by)}); every run is fitted as a "
            "point")
