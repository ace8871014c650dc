"""Bad input gives one clear message, never a deep traceback or a silently wrong fit."""

import numpy as np
import pandas as pd
import pytest

from scaling.data import load_chinchilla, prepare
from scaling.errors import DataError, ScalingWarning
from scaling.laws import ChinchillaLaw
from scaling.synthetic import sample_runs

TRUTH = dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.30)


@pytest.fixture
def runs():
    return sample_runs(ChinchillaLaw.from_params(**TRUTH), {"N": np.logspace(7, 9, 4), "D": np.logspace(9, 11, 4)},
                       noise=0.003, seed=0)


def test_shipped_data_has_clean_columns():
    df = load_chinchilla()
    assert list(df.columns) == ["N", "D", "C", "loss"] and len(df) == 245
    np.testing.assert_allclose(df["C"], 6 * df["N"] * df["D"], rtol=1e-8)
    assert len(load_chinchilla(drop_highest_loss=5)) == 240


def test_column_mapping_and_derived_tokens(runs):
    raw = runs.rename(columns={"N": "params", "loss": "val_loss"}).drop(columns=["D"])
    df = prepare(raw, ["N", "D", "loss"], columns="N=params,loss=val_loss")
    np.testing.assert_allclose(df["D"], runs["D"])


def test_misnamed_column_in_mapping(runs):
    with pytest.raises(DataError, match="--columns names"):
        prepare(runs, ["N", "D", "loss"], columns="N=n_params")


def test_nan_is_reported_or_dropped(runs):
    runs.loc[3, "loss"] = np.nan
    with pytest.raises(DataError, match="NaN.*loss.*dropna"):
        ChinchillaLaw(bootstrap=0).fit(runs)
    assert len(prepare(runs, ["N", "D", "loss"], dropna=True)) == len(runs) - 1


@pytest.mark.parametrize("col,val", [("N", 0.0), ("D", -5.0), ("loss", 0.0)])
def test_non_positive_values(runs, col, val):
    runs.loc[2, col] = val
    with pytest.raises(DataError, match=f"column '{col}' must be positive"):
        ChinchillaLaw(bootstrap=0).fit(runs)


def test_non_numeric_values(runs):
    runs["loss"] = runs["loss"].astype(object)
    runs.loc[1, "loss"] = "diverged"
    with pytest.raises(DataError, match="non-numeric.*diverged"):
        ChinchillaLaw(bootstrap=0).fit(runs)


def test_all_points_at_one_size(runs):
    one = runs[runs["N"] == runs["N"].iloc[0]]
    one = pd.concat([one] * 3, ignore_index=True)
    with pytest.raises(DataError, match="share one value of N"):
        ChinchillaLaw(bootstrap=0).fit(one)


def test_perplexity_instead_of_loss_warns(runs):
    runs["loss"] = np.exp(runs["loss"]) * 10
    with pytest.warns(ScalingWarning, match="perplexity"):
        prepare(runs, ["N", "D", "loss"])


def test_mixed_bits_and_nats_warns():
    grid = {"N": np.logspace(7, 9, 6), "D": np.logspace(9, 11, 6)}
    df = sample_runs(ChinchillaLaw.from_params(**TRUTH), grid, noise=0.002, seed=0)
    df.loc[df.index % 3 == 0, "loss"] /= np.log(2)  # a third of the runs logged in bits
    with pytest.warns(ScalingWarning, match="bits"):
        ChinchillaLaw(bootstrap=0).fit(df)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.assign(N=d["N"] / 1e9), "largest N is 1: .*millions or billions"),  # N in billions
    (lambda d: d.assign(D=d["D"] / 1e6), r"tokens per parameter, has median 0\.00"),  # D in millions of tokens
    (lambda d: d.assign(D=d["D"] / 1e9), "largest D is 100 tokens"),  # D in billions
    # C in GPU-hours, D worked out from it
    (lambda d: d.assign(C=6 * d["N"] * d["D"] / 3e17).drop(columns="D"), r"is C in FLOPs\?"),
])
def test_sizes_that_are_not_plain_counts_warn(runs, change, match):
    with pytest.warns(ScalingWarning, match=match):
        prepare(change(runs), ["N", "D", "loss"])


def test_plain_counts_do_not_warn(runs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(runs, ["N", "D", "loss"])


def test_unreadable_file(tmp_path):
    p = tmp_path / "runs.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        ChinchillaLaw(bootstrap=0).fit(p)
    with pytest.raises(DataError, match="no such file"):
        ChinchillaLaw(bootstrap=0).fit(tmp_path / "nope.csv")


def test_parquet_round_trip(runs, tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "runs.parquet"
    runs.to_parquet(p)
    law = ChinchillaLaw(bootstrap=0).fit(p)
    assert law.n_points_ == len(runs)
