"""The IMDB data layer: every source gives the same data, bad input fails with one clear line."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imdb_llm.imdb.data import DataError, clean_text, load_imdb

REPO = Path(__file__).resolve().parents[1]


def _rows(imdb_dir, split):
    return pq.read_table(imdb_dir / f"{split}-00000-of-00001.parquet").to_pylist()


def _write_parquet(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}-00000-of-00001.parquet")


def _make_acl_tree(imdb_dir, root):
    """Rebuild the fixture in the official aclImdb/ layout (files named <id>_<stars>.txt)."""
    for split, sub in (("train", "train"), ("test", "test"), ("unsupervised", "train")):
        for i, row in enumerate(_rows(imdb_dir, split)):
            name = {0: "neg", 1: "pos", -1: "unsup"}[row["label"]]
            folder = root / "aclImdb" / sub / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{7 if row['label'] == 1 else 2}.txt").write_text(row["text"], encoding="utf-8")
    return root / "aclImdb"


def test_parquet_split_is_stratified_seeded_and_clean(imdb_dir):
    d = load_imdb(dataset_dir=str(imdb_dir), validation_ratio=0.25, with_unsupervised=True)
    n_train = len(_rows(imdb_dir, "train"))
    assert len(d["train"]) + len(d["validation"]) == n_train
    assert len(d["test"]) == len(_rows(imdb_dir, "test"))
    val_labels = d["validation"]["label"]
    assert abs(sum(val_labels) - len(val_labels) / 2) <= 1  # stratified: half positive
    assert not set(d["train"]["text"]) & set(d["validation"]["text"])
    assert all("<br" not in t for split in ("train", "test", "unsupervised") for t in d[split]["text"])
    again = load_imdb(dataset_dir=str(imdb_dir), validation_ratio=0.25)
    assert again["validation"]["text"] == d["validation"]["text"]  # seeded
    other = load_imdb(dataset_dir=str(imdb_dir), validation_ratio=0.25, split_seed=7)
    assert other["validation"]["text"] != d["validation"]["text"]


def test_sample_limits_keep_both_classes(imdb_dir):
    d = load_imdb(dataset_dir=str(imdb_dir), max_train_samples=20, max_test_samples=10, max_eval_samples=6)
    assert (len(d["train"]), len(d["test"]), len(d["validation"])) == (20, 10, 6)
    assert set(d["train"]["label"]) == {0, 1} and set(d["test"]["label"]) == {0, 1}


def test_imdb_dir_env_is_used(imdb_dir, monkeypatch):
    monkeypatch.setenv("IMDB_DIR", str(imdb_dir))
    assert len(load_imdb()["test"]) == len(_rows(imdb_dir, "test"))


def test_acl_folder_and_tarball_match_parquet(imdb_dir, tmp_path):
    ref = load_imdb(dataset_dir=str(imdb_dir), validation_ratio=0.0, with_unsupervised=True)
    acl = _make_acl_tree(imdb_dir, tmp_path / "tree")
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(acl, arcname="aclImdb")
    for source in (acl, acl.parent, tarball):
        got = load_imdb(dataset_dir=str(source), validation_ratio=0.0, with_unsupervised=True)
        for split in ("train", "test", "unsupervised"):
            assert sorted(got[split]["text"]) == sorted(ref[split]["text"]), (source, split)
        pairs = dict(zip(got["test"]["text"], got["test"]["label"]))
        assert pairs == dict(zip(ref["test"]["text"], ref["test"]["label"]))


def test_clean_text():
    assert clean_text("Great.<br /><br />Really<BR>good ") == "Great.\n\nReally\ngood"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_path", "no such file or directory"),
        ("corrupt_parquet", "cannot read Parquet"),
        ("missing_column", "missing column(s) label"),
        ("bad_label", "label 3 outside [0, 1]"),
        ("empty_text", "empty text in row 1"),
        ("corrupt_tarball", "corrupt or unreadable tarball"),
        ("no_test_split", "no test-*.parquet file"),
        ("non_utf8", "not UTF-8 text"),
    ],
)
def test_bad_input_is_one_clear_error(case, message, tmp_path, imdb_dir):
    good_train, good_test = _rows(imdb_dir, "train")[:4], _rows(imdb_dir, "test")[:4]
    folder = tmp_path / "data"
    if case == "missing_path":
        folder = tmp_path / "nowhere"
    elif case == "corrupt_parquet":
        _write_parquet(folder, "train", good_train)
        (folder / "test-00000-of-00001.parquet").write_bytes(b"PAR1 this is not parquet")
    elif case == "missing_column":
        _write_parquet(folder, "train", [{"text": r["text"]} for r in good_train])
        _write_parquet(folder, "test", good_test)
    elif case == "bad_label":
        _write_parquet(folder, "train", good_train[:2] + [{"text": "x", "label": 3}])
        _write_parquet(folder, "test", good_test)
    elif case == "empty_text":
        _write_parquet(folder, "train", [good_train[0], {"text": "   ", "label": 1}])
        _write_parquet(folder, "test", good_test)
    elif case == "corrupt_tarball":
        folder = tmp_path / "aclImdb_v1.tar.gz"
        folder.write_bytes(b"\x1f\x8b\x08 truncated gzip")
    elif case == "no_test_split":
        _write_parquet(folder, "train", good_train)
    elif case == "non_utf8":
        acl = _make_acl_tree(imdb_dir, tmp_path / "tree")
        (acl / "train" / "pos" / "0_7.txt").write_bytes(b"caf\xe9 latin-1 review")
        folder = acl
    with pytest.raises(DataError) as err:
        load_imdb(dataset_dir=str(folder))
    text = str(err.value)
    assert message in text and "\n" not in text
    if case not in ("missing_path",):
        assert str(tmp_path) in text  # names the file


def test_script_exits_nonzero_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "tok"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/train_tokenizer.py"), "--dataset_dir", str(tmp_path / "missing"), "--output_dir", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert not out.exists()


def test_no_local_data_and_no_hub_says_how_to_get_it(monkeypatch):
    monkeypatch.delenv("IMDB_DIR", raising=False)
    with pytest.raises(DataError, match="IMDB_DIR"):
        load_imdb()
