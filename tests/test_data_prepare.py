"""Issue #12, your own data: `scaling data prepare`, the `tokens` corpus and its checks, the evaluation sample
(eval_se), one batch size per sweep, and a CI sweep trained on a locally trained BPE tokenizer."""

import json
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.errors import DataError, ScalingError, SettingsError
from scaling.sweep import expand, export, load_spec, run_sweep
from scaling.sweep.prepare import PIECE_CHARS, prepare
from scaling.sweep.spec import SpecError

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
TOY = {"name": "toytok", "trainer": "toy", "model": {"sizes": [20000], "seq_len": 64}, "grid": {"tokens": [200000]},
       "toy": {"noise": 0.001}}


def toy(corpus: dict, **model) -> dict:
    spec = json.loads(json.dumps(TOY))
    spec["corpus"] = corpus
    spec["model"].update(model)
    return spec


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def texts(tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    for i, f in enumerate(sorted((STDLIB / "json").glob("*.py"))):
        (d / f"doc{i}.txt").write_text(f.read_text())
    return d


def write_tokens(folder: Path, train, val, dtype="uint16", meta=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.asarray(train, dtype=dtype).tofile(folder / "train.bin")
    np.asarray(val, dtype=dtype).tofile(folder / "val.bin")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# ------------------------------------------------------------------ scaling data prepare
def test_prepare_bytes_writes_flat_tokens_documents_separated_by_eos(texts, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["data", "prepare", "--text", str(texts / "*.txt"), "--tokenizer", "bytes", "--val-fraction", "0.1",
                 "--out", str(out)]) == 0
    assert "corpus: {name: tokens, path:" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert {"vocab_size", "dtype", "eos_id", "tokenizer", "n_train_tokens", "n_val_tokens", "source"} <= set(meta)
    assert (meta["vocab_size"], meta["dtype"], meta["eos_id"], meta["tokenizer"]) == (257, "uint16", 256, "bytes")
    train, val = np.fromfile(out / "train.bin", np.uint16), np.fromfile(out / "val.bin", np.uint16)
    assert (len(train), len(val)) == (meta["n_train_tokens"], meta["n_val_tokens"])
    docs = sorted(texts.glob("*.txt"))
    n_bytes = sum(len(f.read_bytes()) for f in docs)
    assert len(train) + len(val) == n_bytes + len(docs)  # every byte, one EOS per document
    assert (train == 256).sum() + (val == 256).sum() == len(docs)
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.15
    # the first document starts the training split, byte for byte, and ends with EOS
    first = docs[0].read_bytes()
    assert bytes(train[:len(first)].astype(np.uint8)) == first and train[len(first)] == 256


def test_a_file_that_is_not_text_is_skipped_and_the_meta_says_so(texts, tmp_path):
    (texts / "blob.txt").write_bytes(bytes(range(256)) * 64)
    with pytest.warns(Warning, match="skipped 1 file"):
        meta = prepare(tmp_path / "tok", text=str(texts / "*.txt"), tokenizer="bytes", val_fraction=0.1,
                       progress=False)
    assert meta["source"]["skipped"] == [str(texts / "blob.txt")]
    assert str(texts / "blob.txt") not in meta["source"]["text"] and len(meta["source"]["text"]) == meta["n_documents"]


def test_prepare_is_safe_to_interrupt_and_rerun(texts, tmp_path, monkeypatch):
    from scaling.sweep import prepare as prep

    out = tmp_path / "tok"
    calls = {"n": 0}
    real = prep.ByteTokenizer.encode_batch

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(prep, "BATCH_CHARS", 4096)  # several batches
    monkeypatch.setattr(prep.ByteTokenizer, "encode_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    assert not (out / "meta.json").exists() and not list(out.glob("*.tmp"))  # nothing looks finished
    monkeypatch.setattr(prep.ByteTokenizer, "encode_batch", real)
    meta = prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    again = prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    assert again.get("skipped") and again["n_train_tokens"] == meta["n_train_tokens"]
    with pytest.warns(Warning, match="prepared from other inputs or settings.*prepared again"):  # new settings: redone
        other = prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.3, progress=False)
    assert not other.get("skipped") and other["n_val_tokens"] > meta["n_val_tokens"]


def test_one_long_document_is_split_and_the_validation_split_is_spread(tmp_path):
    text = "".join(f"line {i} of a single long document\n" for i in range(40000))  # 1.3 MB, one file
    f = tmp_path / "one.txt"
    f.write_text(text)
    meta = prepare(tmp_path / "tok", text=str(f), tokenizer="bytes", val_fraction=0.05, progress=False)
    assert meta["n_documents"] == 1
    assert 0.04 < meta["n_val_tokens"] / (meta["n_train_tokens"] + meta["n_val_tokens"]) < 0.06
    val = np.fromfile(tmp_path / "tok" / "val.bin", np.uint16)
    numbers = [int(w.split()[1]) for w in bytes(val[val < 256].astype(np.uint8)).decode().splitlines()
               if w.startswith("line ")]
    assert min(numbers) < 10000 and max(numbers) > 30000  # from all over the document, not only its end
    assert len(text) > 20 * PIECE_CHARS


def test_prepare_refuses_bad_input_with_one_line(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("too short to hold anything out\n")
    out = str(tmp_path / "tok")
    err = one_line_error(capsys, ["data", "prepare", "--text", str(small), "--tokenizer", "bytes", "--out", out])
    assert "validation split is empty" in err and "--val-fraction" in err
    err = one_line_error(capsys, ["data", "prepare", "--text", str(tmp_path / "nope*.txt"), "--tokenizer", "bytes",
                                  "--out", out])
    assert "no files match" in err
    err = one_line_error(capsys, ["data", "prepare", "--text", str(small), "--tokenizer", "bytes", "--out", out,
                                  "--val-fraction", "1.5"])
    assert "--val-fraction" in err
    (tmp_path / "afile").write_text("x")
    err = one_line_error(capsys, ["data", "prepare", "--text", str(small), "--tokenizer", "bytes",
                                  "--out", str(tmp_path / "afile")])
    assert "is a file" in err


def test_a_tokenizer_folder_that_does_not_load_is_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    text = tmp_path / "t.txt"
    text.write_text("hello world\n" * 100)
    base = ["data", "prepare", "--text", str(text), "--out", str(tmp_path / "tok"), "--tokenizer"]
    err = one_line_error(capsys, base + [str(tmp_path / "missing")])
    assert "does not exist" in err and "--tokenizer bytes" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{ this is not json")
    (broken / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    err = one_line_error(capsys, base + [str(broken)])
    assert "does not load with transformers.AutoTokenizer" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "does not load" in one_line_error(capsys, base + [str(empty)])
    assert not (tmp_path / "tok" / "meta.json").exists()


def test_hf_dataset_without_datasets_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    (tmp_path / "ds").mkdir()
    err = one_line_error(capsys, ["data", "prepare", "--hf-dataset", str(tmp_path / "ds"), "--tokenizer", "bytes",
                                  "--out", str(tmp_path / "tok")])
    assert "pip install datasets" in err


def test_hf_columns_that_are_not_text_and_other_splits_are_named(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [f"document {i}: " + "some text " * 40 for i in range(200)]
    datasets.Dataset.from_dict({"text": rows, "n": list(range(200)), "parts": [[r, r] for r in rows]}).save_to_disk(
        str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"column 'n' holds int64, not text; its text columns are \['text'\]"):
        prepare(tmp_path / "tok", hf_dataset=tmp_path / "ds", text_column="n", tokenizer="bytes", progress=False)
    with pytest.raises(DataError, match=r"column 'parts' holds .*not text; join each row's pieces"):
        prepare(tmp_path / "tok", hf_dataset=tmp_path / "ds", text_column="parts", tokenizer="bytes", progress=False)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": rows[:150]}),
                               "test": datasets.Dataset.from_dict({"text": rows[150:]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.warns(Warning, match=r"splits \['test', 'train'\]: preparing 'train' only \(150 rows; test left out"):
        meta = prepare(tmp_path / "tok", hf_dataset=tmp_path / "dd", tokenizer="bytes", val_fraction=0.1,
                       progress=False)
    assert meta["n_documents"] == 150
    pa = pytest.importorskip("pyarrow")
    if hasattr(pa, "string_view"):  # newer Arrow text columns are text too
        datasets.Dataset(pa.table({"text": pa.array(rows, type=pa.string_view())})).save_to_disk(str(tmp_path / "sv"))
        meta = prepare(tmp_path / "tok", hf_dataset=tmp_path / "sv", tokenizer="bytes", val_fraction=0.1,
                       progress=False)
        assert meta["n_documents"] == 200


def test_an_empty_folder_and_an_interrupted_prepare_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    err = one_line_error(capsys, ["data", "prepare", "--text", str(tmp_path / "empty"), "--tokenizer", "bytes",
                                  "--out", str(tmp_path / "tok")])
    assert "is a folder with no files in it" in err and "no such file" not in err
    from scaling.sweep import prepare as prep

    def stopped(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C while the tokenizer loads or a batch encodes

    monkeypatch.setattr(prep, "prepare", stopped)
    (tmp_path / "a.txt").write_text("some text\n" * 100)
    assert main(["data", "prepare", "--text", str(tmp_path / "a.txt"), "--tokenizer", "bytes", "--out",
                 str(tmp_path / "tok")]) == 130
    err = capsys.readouterr().err
    assert "interrupted: no new files in" in err and "run the same command again" in err and "Traceback" not in err


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [f"document {i}: " + "some text " * (50 + i % 7) for i in range(400)]
    datasets.Dataset.from_dict({"body": rows, "n": list(range(400))}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match="no column 'text'.*--text-column"):
        prepare(tmp_path / "tok", hf_dataset=tmp_path / "ds", tokenizer="bytes", progress=False)
    meta = prepare(tmp_path / "tok", hf_dataset=tmp_path / "ds", text_column="body", tokenizer="bytes",
                   val_fraction=0.1, progress=False)
    assert meta["n_documents"] == 400
    assert meta["n_train_tokens"] + meta["n_val_tokens"] == sum(len(r.encode()) + 1 for r in rows)


# ------------------------------------------------------------------ the tokens corpus and its checks
def test_tokens_corpus_model_vocabulary_follows_the_corpus(tmp_path):
    rng = np.random.default_rng(0)
    d = write_tokens(tmp_path / "c", rng.integers(0, 3000, 50000), rng.integers(0, 3000, 5000),
                     meta={"vocab_size": 3000, "dtype": "uint16", "eos_id": 0})
    spec = load_spec(toy({"name": "tokens", "path": str(d)}))
    assert spec["model"]["vocab_size"] == 3000
    cfg = expand(spec)[0]
    assert cfg["vocab_size"] == 3000 and cfg["N_total"] == cfg["N"] + 3000 * cfg["d_model"]
    bigger = load_spec(toy({"name": "tokens", "path": str(d)}, vocab_size=3072))  # the YAML may set it
    assert expand(bigger)[0]["vocab_size"] == 3072
    with pytest.raises(SpecError, match="smaller than the corpus's vocabulary"):
        load_spec(toy({"name": "tokens", "path": str(d)}, vocab_size=2048))


def test_nanogpt_bin_files_and_npy_arrays(tmp_path):
    rng = np.random.default_rng(0)
    nano = write_tokens(tmp_path / "nano", rng.integers(0, 50257, 40000), rng.integers(0, 50257, 4000))
    with pytest.raises(SettingsError, match="corpus.dtype.*corpus.vocab_size"):
        load_spec(toy({"name": "tokens", "path": str(nano)}))
    spec = load_spec(toy({"name": "tokens", "path": str(nano), "dtype": "uint16", "vocab_size": 50257}))
    assert spec["model"]["vocab_size"] == 50257
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "train.npy", rng.integers(0, 500, (300, 65)).astype(np.int32))  # (sequences, length) is one stream
    np.save(npy / "val.npy", rng.integers(0, 500, 4000).astype(np.int32))
    spec = load_spec(toy({"name": "tokens", "path": str(npy), "vocab_size": 500}))
    from scaling.sweep.corpus import load_corpus

    train, val, _ = load_corpus(spec["corpus"])
    assert train.shape == (300 * 65,) and isinstance(train, np.memmap | np.ndarray) and not train.flags.owndata


@pytest.mark.parametrize("case,match", [
    ("id_too_large", "holds token id 700, but .*is 512"),
    ("not_multiple", "not a whole number of uint16 tokens"),
    ("empty_val", "val.bin is empty"),
    ("short_val", "too short to evaluate 64-token windows"),
    ("no_folder", "does not exist"),
    ("no_val", "has no val.bin"),
    ("meta_disagrees", "corpus.dtype is 'uint32' but .*meta.json says 'uint16'"),
    ("cut_at_a_token", "train.bin holds 17,952 tokens but .*meta.json counts 20,000"),
])
def test_bad_token_folders_are_caught_before_anything_trains(tmp_path, capsys, case, match):
    rng = np.random.default_rng(0)
    meta = {"vocab_size": 512, "dtype": "uint16", "eos_id": 0}
    d = write_tokens(tmp_path / "c", rng.integers(0, 512, 20000), rng.integers(0, 512, 2000), meta=meta)
    corpus = {"name": "tokens", "path": str(d)}
    if case == "id_too_large":
        bad = rng.integers(0, 512, 2000)
        bad[1234] = 700
        np.asarray(bad, np.uint16).tofile(d / "val.bin")
    elif case == "not_multiple":
        with open(d / "train.bin", "ab") as f:
            f.write(b"\x01")
    elif case == "empty_val":
        (d / "val.bin").write_bytes(b"")
    elif case == "short_val":
        np.arange(100, dtype=np.uint16).tofile(d / "val.bin")
    elif case == "no_folder":
        corpus["path"] = str(tmp_path / "elsewhere")
    elif case == "no_val":
        (d / "val.bin").unlink()
    elif case == "meta_disagrees":
        corpus["dtype"] = "uint32"
    elif case == "cut_at_a_token":  # a whole number of tokens, but not those scaling data prepare counted
        (d / "meta.json").write_text(json.dumps({**meta, "n_train_tokens": 20000, "n_val_tokens": 2000}))
        with open(d / "train.bin", "r+b") as f:
            f.truncate(2 * 17952)
    with pytest.raises(ScalingError, match=match):
        load_spec(toy(corpus))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(toy(corpus)))
    root = tmp_path / "root"
    err = one_line_error(capsys, ["sweep", "run", str(path), "--root", str(root)])
    assert not (root / "toytok" / "runs").exists(), err


def test_an_unknown_corpus_name_is_one_line_before_anything_trains(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TOY, "trainer": "transformer", "corpus": {"name": "wikitext"}}))
    err = one_line_error(capsys, ["sweep", "run", str(path), "--root", str(tmp_path / "root")])
    assert "corpus.name must be one of python-stdlib, synthetic, tokens; got 'wikitext'" in err
    assert not (tmp_path / "root" / "toytok").exists()


def test_a_corpus_re_prepared_under_the_same_name_is_a_changed_sweep(tmp_path):
    from scaling.sweep.runner import SweepChangedError

    rng = np.random.default_rng(0)
    d = write_tokens(tmp_path / "c", rng.integers(0, 300, 20000), rng.integers(0, 300, 2000),
                     meta={"vocab_size": 300, "dtype": "uint16", "eos_id": 0})
    run_sweep(toy({"name": "tokens", "path": str(d)}), root=tmp_path / "root", workers=1, progress=False)
    write_tokens(d, rng.integers(0, 300, 20000), rng.integers(0, 300, 2000))
    with pytest.raises(SweepChangedError, match=r"corpus: the token files in .* are not those the sweep trained on"):
        run_sweep(toy({"name": "tokens", "path": str(d)}), root=tmp_path / "root", workers=1, progress=False)


def test_a_store_from_an_earlier_version_is_refused_with_what_to_do(tmp_path):
    from scaling.sweep.runner import SweepChangedError
    from scaling.sweep.store import Store

    spec = load_spec(TOY)
    Store(tmp_path / "toytok" / "sweep.sqlite").set_meta(spec=spec)  # written before the store had a format
    with pytest.raises(SweepChangedError, match="earlier version.*first windows.*move .* aside"):
        run_sweep(TOY, root=tmp_path, workers=1, progress=False)


# ------------------------------------------------------------------ one batch size, one data stream
def test_one_batch_size_per_sweep_and_one_data_stream_per_seed():
    from scaling.sweep.train import _batch

    spec = load_spec({**TOY, "model": {"sizes": [20000, 80000, 300000], "seq_len": 64},
                      "grid": {"tokens": None, "compute": [1e12, 4e12]}, "seeds": [0, 1]})
    runs = expand(spec)
    assert {r["tokens_per_step"] for r in runs} == {2048}
    tokens = np.arange(100000) % 251
    by_seed = {}
    for r in runs:
        first = [_batch(tokens, r["seed"], step, r["tokens_per_step"] // r["seq_len"], r["seq_len"]) for step in (0, 7)]
        by_seed.setdefault(r["seed"], []).append(first)
    for seed, batches in by_seed.items():  # every size and budget of a seed reads the same batches
        for b in batches[1:]:
            assert all((x == y).all() for x, y in zip(b, batches[0]))
    assert not (by_seed[0][0][0] == by_seed[1][0][0]).all()
    auto = expand(load_spec({**TOY, "batch": {"tokens_per_step": "auto"}, "grid": {"tokens": [300000, 2000000]}}))
    assert len({r["tokens_per_step"] for r in auto}) == 2  # the per-run rule, when asked
    axis = expand(load_spec({**TOY, "batch": {"tokens_per_step": [1024, 4096]}}))
    assert sorted(r["tokens_per_step"] for r in axis) == [1024, 4096] and len({r["run_id"] for r in axis}) == 2


# ------------------------------------------------------------------ the evaluation sample
def test_eval_windows_are_spread_over_the_whole_split_and_se_is_per_window():
    from scaling.sweep.train import eval_windows, mean_and_se

    w = eval_windows(1_000_000, 64, 65536)
    assert len(w) == 1024 and w[0] == 0 and w[-1] == 1_000_000 - 65
    assert (np.diff(w) >= 64).all()  # no overlap
    whole = eval_windows(10_000, 64, 10**9)
    assert len(whole) == (10_000 - 1) // 64 and (np.diff(whole) == 64).all()
    x = np.random.default_rng(0).normal(2.0, 0.4, 4000)
    mean, se = mean_and_se(x)
    assert mean == pytest.approx(x.mean()) and se == pytest.approx(0.4 / np.sqrt(4000), rel=0.05)


# ------------------------------------------------------------------ a BPE corpus, end to end
def test_ci_sweep_on_a_locally_trained_bpe_tokenizer(tmp_path, capsys):
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    files = sorted(str(f) for pkg in ("json", "email", "logging", "asyncio") for f in (STDLIB / pkg).glob("*.py"))
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.train(files, tokenizers.trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(tmp_path / "bpe"))

    out = tmp_path / "corpus"
    text = [a for pkg in ("json", "email", "logging", "asyncio") for a in ("--text", str(STDLIB / pkg / "*.py"))]
    assert main(["data", "prepare", *text, "--tokenizer", str(tmp_path / "bpe"), "--val-fraction", "0.1",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["vocab_size"] >= 1000 and meta["dtype"] == "uint16" and meta["eos_id"] == 0

    spec = yaml.safe_load((ROOT / "sweeps" / "ci.yaml").read_text())
    spec.update(name="ci-bpe", corpus={"name": "tokens", "path": str(out)})
    runs = run_sweep(spec, root=tmp_path / "root", workers=2, progress=False)
    assert (runs["status"] == "done").all(), runs["error"].dropna().tolist()
    table, curves = export("ci-bpe", tmp_path / "root")
    V = meta["vocab_size"]
    assert (table["vocab_size"] == V).all()
    assert (table["N_total"] == table["N"] + V * table["d_model"]).all()  # the embedding counts the vocabulary
    assert (table["C_total"] > table["C_kaplan"]).all() and (table["C_kaplan"] > table["C"]).all()
    assert (table["eval_se"] > 0).all() and (table["eval_se"] < 0.01 * table["loss"]).all()
    assert (table["loss"] < np.log(V)).all()  # learned something beyond a uniform guess
    for N, g in table.groupby("N"):
        assert g.sort_values("D")["loss"].is_monotonic_decreasing, g


def test_two_prepares_into_one_folder_are_refused(texts, tmp_path):
    import fcntl

    out = tmp_path / "tok"
    out.mkdir()
    (out / "train.bin.999999.tmp").write_bytes(b"left by a killed run")
    with open(out / ".prepare.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SettingsError, match="another `scaling data prepare` is writing"):
            prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    assert not list(out.glob("*.tmp")) and (out / "meta.json").exists()


def test_runs_longer_than_the_training_split_are_named(tmp_path):
    # batches are random windows: a run of 2.5x the split's tokens saw it 2.5 times over, without a word
    from scaling.sweep.runner import warn_repeated_data

    rng = np.random.default_rng(0)
    d = write_tokens(tmp_path / "c", rng.integers(0, 300, 80000), rng.integers(0, 300, 8000),
                     meta={"vocab_size": 300, "dtype": "uint16", "eos_id": 0})
    spec = load_spec({**toy({"name": "tokens", "path": str(d)}), "trainer": "transformer",
                      "grid": {"tokens": [40000, 200000]}})
    with pytest.warns(Warning, match=r"1 of 2 runs train on more tokens than the corpus's training split holds "
                                     r"\(80,000\): up to 200,704 tokens, 2.5 passes"):
        warn_repeated_data(spec, expand(spec))


# ------------------------------------------------------------------ a newcomer's review (2026-12-02, afternoon)
def test_the_same_text_prepared_again_is_the_same_corpus_and_a_store_from_before_resumes(texts, tmp_path, monkeypatch):
    import os

    from scaling.sweep.corpus import TokenFolder

    out = tmp_path / "tok"
    prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    spec = toy({"name": "tokens", "path": str(out)}, sizes=[20000, 40000])
    first = run_sweep(spec, root=tmp_path / "root", workers=1, progress=False)
    for f in texts.iterdir():  # touched (a checkout, a copy): other times, the same text
        os.utime(f, (1e9, 1e9))
    with pytest.warns(Warning, match="or from the same files touched since"):
        prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    again = run_sweep(spec, root=tmp_path / "root", workers=1, progress=False)
    assert sorted(again["run_id"]) == sorted(first["run_id"]) and (again["attempts"] == 1).all()
    # a store whose fingerprint hashed meta.json whole (before 2026-12-02) resumes on the same tokens, its ids kept
    legacy = TokenFolder.fingerprint
    monkeypatch.setattr(TokenFolder, "fingerprint", lambda self, legacy=True: legacy_fp(self))
    legacy_fp = lambda self: legacy(self, legacy=True)  # noqa: E731
    old = run_sweep({**spec, "name": "legacy"}, root=tmp_path / "root", workers=1, progress=False)
    monkeypatch.setattr(TokenFolder, "fingerprint", legacy)
    now = run_sweep({**spec, "name": "legacy"}, root=tmp_path / "root", workers=1, progress=False)
    assert sorted(now["run_id"]) == sorted(old["run_id"]) and (now["attempts"] == 1).all()
    assert set(now["run_id"]) != set(again["run_id"])  # the ids did hash the other fingerprint


def test_an_out_folder_inside_the_text_folder_is_never_read_as_text(texts, tmp_path):
    out = texts / "tokens"
    meta = prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    again = prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    assert again.get("skipped") and again["n_documents"] == meta["n_documents"] == len(list(texts.glob("*.txt")))
    other = prepare(tmp_path / "elsewhere", text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    assert other["n_train_tokens"] + other["n_val_tokens"] == meta["n_train_tokens"] + meta["n_val_tokens"]


def test_text_in_other_encodings_is_decoded_or_named(tmp_path):
    d = tmp_path / "enc"
    d.mkdir()
    text = "Café naïve résumé\n" * 50
    (d / "a.txt").write_bytes(text.encode("latin-1"))
    (d / "b.txt").write_bytes(text.encode("utf-16"))  # with its byte-order mark
    (d / "c.txt").write_bytes(text.encode("utf-8"))
    n_bad = sum(ord(ch) > 127 for ch in text)  # 4 a line: each one latin-1 byte, not UTF-8
    with pytest.warns(Warning, match=rf"1 file\(s\) are not UTF-8 \(such as .*a.txt: {n_bad} character\(s\) replaced"):
        meta = prepare(tmp_path / "tok", text=str(d), tokenizer="bytes", val_fraction=0.2, progress=False)
    assert meta["n_documents"] == 3 and "skipped" not in meta["source"]
    tokens = np.concatenate([np.fromfile(tmp_path / "tok" / f"{s}.bin", np.uint16) for s in ("train", "val")])
    # b.txt decoded as UTF-16 is c.txt's bytes; in a.txt each 2-byte UTF-8 letter became 3 bytes of U+FFFD; + 3 EOS
    assert tokens.size == 3 * len(text.encode("utf-8")) + n_bad + 3


def test_prepare_names_an_empty_training_split_and_clears_stale_temporary_files(texts, tmp_path, capsys):
    err = one_line_error(capsys, ["data", "prepare", "--text", str(texts), "--tokenizer", "bytes",
                                  "--val-fraction", "0.9999", "--out", str(tmp_path / "x")])
    assert "the training split is empty" in err and "lower --val-fraction" in err
    out = tmp_path / "tok"
    prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False)
    (out / "train.bin.12345.tmp").write_bytes(b"x" * 100)  # a killed re-prepare's leftovers
    assert prepare(out, text=str(texts), tokenizer="bytes", val_fraction=0.1, progress=False).get("skipped")
    assert not list(out.glob("*.tmp"))


def test_corpus_settings_that_cannot_hold_are_refused_and_those_that_do_not_apply_named(tmp_path):
    rng = np.random.default_rng(0)
    d = write_tokens(tmp_path / "n", rng.integers(0, 1500, 20000), rng.integers(0, 1500, 2000))
    with pytest.raises(DataError, match=r"corpus.dtype uint8 holds ids up to 255, but the vocabulary has 1,500"):
        load_spec(toy({"name": "tokens", "path": str(d), "dtype": "uint8", "vocab_size": 1500}))
    with pytest.warns(Warning, match=r"corpus.val_fraction has no effect on the tokens corpus, which reads path, "
                                     r"dtype, vocab_size \(.*scaling data prepare --val-fraction"):
        load_spec(toy({"name": "tokens", "path": str(d), "dtype": "uint16", "vocab_size": 1500, "val_fraction": 0.3}))
    with pytest.warns(Warning, match=r"corpus.states has no effect on the python-stdlib corpus"):
        load_spec(toy({"name": "python-stdlib", "states": 64}))
    spec = load_spec(toy({"name": "tokens", "path": str(d), "dtype": "uint16", "vocab_size": 1500}))
    assert load_spec(spec)["corpus"] == spec["corpus"]  # a loaded spec, every key at its default, passes back in


def test_a_relative_corpus_path_is_read_beside_the_definition(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "project"
    write_tokens(folder / "tok", rng.integers(0, 300, 20000), rng.integers(0, 300, 2000),
                 meta={"vocab_size": 300, "dtype": "uint16", "eos_id": 0})
    (folder / "s.yaml").write_text(yaml.safe_dump(toy({"name": "tokens", "path": "tok"})))
    monkeypatch.chdir(tmp_path)  # elsewhere
    assert load_spec(folder / "s.yaml")["corpus"]["path"] == str((folder / "tok").resolve())
    (folder / "t.yaml").write_text(yaml.safe_dump(toy({"name": "tokens", "path": "nope"})))
    with pytest.raises(SpecError, match=r"corpus.path nope does not exist beside the definition .* nor in the "
                                        r"current directory"):
        load_spec(folder / "t.yaml")


def test_an_unquoted_glob_is_a_list_of_files_and_an_interrupted_sweep_repeats_its_options(texts, tmp_path, capsys,
                                                                                         monkeypatch):
    files = [str(f) for f in sorted(texts.glob("*.txt"))]
    assert main(["data", "prepare", "--text", *files, "--tokenizer", "bytes", "--val-fraction", "0.2", "--out",
                 str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "meta.json").read_text())["n_documents"] == len(files)
    import scaling.sweep as sweep
    from scaling.sweep.graph import SweepInterrupted

    def stopped(*a, **k):
        raise SweepInterrupted(1, 0, 2, 2)

    monkeypatch.setattr(sweep, "run_sweep", stopped)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(TOY))
    assert main(["sweep", "run", str(path), "--workers", "1", "--root", str(tmp_path / "r")]) == 130
    assert f"resume with: scaling sweep run {path} --root {tmp_path / 'r'} --workers 1" in capsys.readouterr().err
