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
    df = df.copy()
    if len(df) == 0:
        raise DataError(f"the table has no rows (only the header: {list(df.columns)})")
    mapping = parse_columns(columns)
    stripped = {c.strip(): c for c in df.columns if isinstance(c, str)}
    mapping = {k: v if v in df.columns else stripped.get(v, v) for k, v in mapping.items()}
    missing_src = [v for v in mapping.values() if v not in df.columns]
    if missing_src:
        raise DataError(f"--columns names {missing_src} but the table has columns {list(df.columns)}")
    # a mapped name replaces a column already called that (--columns D=C on a table that has D)
    shadowed = [k for k, v in mapping.items() if k in df.columns and k != v and k not in mapping.values()]
    df = df.drop(columns=shadowed).rename(columns={v: k for k, v in mapping.items()})
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
    for c in required:
        if c != target:
            check_isolated(df[c], c)
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


def replicate_means(df: pd.DataFrame, target: str = "loss", by: Iterable[str] | None = None,
                    seed: str = "seed") -> pd.DataFrame:
    """One row per cell: the mean of ``target`` over the cell's seeds, its spread and how many seeds.

    Parameters
    ----------
    df : a run table with one row per run (every seed).
    target : the column averaged (``loss``).
    by : the columns that define a cell. Default: every column except ``target``, ``seed`` and the per-run
        outcomes of a sweep's runs table (:data:`RUN_OUTCOMES`), so on a sweep's export a cell is one setting
        of everything (N, D, lr, batch, warmup, ...) and its rows differ only in the seed.
    seed : the seed column, dropped from the result.

    Returns
    -------
    DataFrame
        The ``by`` columns and ``target`` in the table's order, then ``{target}_sd`` (the sample standard
        deviation over seeds, NaN for one seed) and ``n_seeds`` (the seeds with a finite ``target``; a failed
        or diverged run has none and does not count). Cells in order of first appearance. Rows that repeat
        another exactly are counted once, with the warning :func:`prepare` gives.
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
    if by:
        keys = df[by].astype(object).where(df[by].notna(), None)  # missing values (no budget) form one key
        cell = keys.apply(tuple, axis=1)
    else:
        cell = pd.Series(0, index=df.index)
    code = pd.factorize(cell)[0]  # order of first appearance
    stats = y.groupby(code).agg(["mean", "std", "count"])
    first = df.loc[~pd.Series(code, index=df.index).duplicated(), by].reset_index(drop=True)
    out = first.assign(**{target: stats["mean"].to_numpy()})
    out = out[[c for c in df.columns if c in by or c == target]]
    out[f"{target}_sd"] = stats["std"].to_numpy()
    out["n_seeds"] = stats["count"].to_numpy().astype(int)
    return out


def replicate_note(means: pd.DataFrame, n_runs: int, target: str = "loss", law=None) -> str:
    """One paragraph on what averaging did and how large the seed-to-seed scatter is, for a fit's notes.

    The scatter is pooled over the cells with two or more seeds, relative to the loss; a cell mean of k seeds is
    known to about that over sqrt(k). With a fitted ``law`` that predicts the loss, its residuals (logs of the
    means) are compared with that: residuals several times larger are misfit of the law, not noise.
    """
    k = means["n_seeds"].to_numpy()
    seeds = f"{k.min()}" if k.min() == k.max() else f"{k.min()}-{k.max()}"
    text = f"averaged {seeds} seeds per cell ({n_runs} runs -> {len(means)} cells)"
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
        verdict = ("about the seed noise" if scale <= 2 * se_rel
                   else f"{scale / se_rel:.1f}x the seed noise: the law misses structure in the means")
        text += f"; the fit's residuals on the means: {100 * scale:.2g}% typical, {verdict}"
    return text


#: the hyperparameter columns of a sweep's runs table, in the order a setting is written
HPARAM_COLUMNS = ("lr", "batch", "warmup")


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
