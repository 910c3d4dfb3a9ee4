"""NBSVM, saved probabilities and the ensemble (issue 15): tiny, CPU, offline."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from imdb_llm.imdb.nbsvm import NBLogisticRegression, nb_log_count_ratio, ngram_orders
from imdb_llm.probs import probs_path, read_probs, write_probs

REPO = Path(__file__).resolve().parents[1]
SPLIT = {"validation_ratio": 0.1, "split_seed": 42, "max_eval_samples": None, "max_test_samples": None, "max_train_samples": None}



def _run(script, *args, timeout=600):
    return subprocess.run([sys.executable, f"scripts/{script}", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_nb_log_count_ratio_matches_hand_computation():
    # docs x features; features: "great" (pos only), "movie" (both), "awful" (neg only)
    X = sp.csr_matrix([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    y = np.array([1, 1, 0, 0])
    # alpha 1: p = 1 + [2, 1, 0] = [3, 2, 1], q = 1 + [0, 1, 2] = [1, 2, 3]; both sum to 6.
    assert np.allclose(nb_log_count_ratio(X, y, alpha=1.0), [math.log(3), 0.0, -math.log(3)])
    # alpha 0.5: p = [2.5, 1.5, 0.5], q = [0.5, 1.5, 2.5]: ratios 5, 1, 1/5.
    assert np.allclose(nb_log_count_ratio(X, y, alpha=0.5), [math.log(5), 0.0, -math.log(5)])
    # Unequal class totals: the L1 normalisation matters. p = 1 + [1, 1] = [2, 2] (sum 4), q = 1 + [2, 0] = [3, 1] (sum 4).
    X2, y2 = sp.csr_matrix([[1, 1], [1, 0], [1, 0]]), np.array([1, 0, 0])
    assert np.allclose(nb_log_count_ratio(X2, y2), [math.log(2 / 3), math.log(2)])
    with pytest.raises(ValueError):
        nb_log_count_ratio(X, np.array([1, 1, 1, 1]))
    model = NBLogisticRegression(C=10.0).fit(X, y)
    assert list(model.predict(X)) == [1, 1, 0, 0]
    assert np.allclose(model.predict_proba(X).sum(1), 1.0)
    assert list(ngram_orders(["great", "not bad", "not at all"])) == [1, 2, 3]


def _synthetic(tmp_path, name, signal, seed, n_val=600, n_test=400, splits=("validation", "test"), **provenance):
    """A fake run: log-odds = signal * (2y - 1) + N(0, 1), on shared ids and labels (only the ``splits`` given)."""
    rng = np.random.default_rng(0)
    labels = {"validation": rng.integers(0, 2, n_val), "test": rng.integers(0, 2, n_test)}
    noise = np.random.default_rng(seed)
    scores = {split: (np.arange(len(labels[split])) * 3 + 1, labels[split], signal * (2 * labels[split] - 1) + noise.normal(0, 1, len(labels[split])))
              for split in splits}
    write_probs(probs_path(name, tmp_path), scores, {"name": name, **SPLIT, **provenance})


def _ensemble(tmp_path, *runs, name="ens"):
    """``runs``: member names, then any extra flags (from the first one starting with --)."""
    first_flag = next((i for i, r in enumerate(runs) if str(r).startswith("--")), len(runs))
    members, flags = runs[:first_flag], runs[first_flag:]
    return _run("ensemble.py", "--runs", *members, "--results_dir", tmp_path, "--results_name", name, *flags)


def test_ensemble_weights_recover_the_better_member(tmp_path):
    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    _synthetic(tmp_path, "useless", signal=0.0, seed=2)
    proc = _ensemble(tmp_path, "useless", "good")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "ens.json").read_text())
    weights = result["weights"]
    assert result["members"] == ["useless", "good"]
    assert weights["good"] > 1.0 and abs(weights["useless"]) < 0.2 * weights["good"]
    m = result["metrics"]
    assert m["n_test"] == 400 and m["test_accuracy"] >= m["best_member_test_accuracy"] - 0.01
    # The ensemble's own probabilities are marked in-sample on validation, so they cannot be stacked again.
    _, meta = read_probs(probs_path("ens", tmp_path))
    assert meta["validation_in_sample"] is True and meta["members"] == ["useless", "good"]
    proc = _ensemble(tmp_path, "good", "ens", name="ens2")
    assert proc.returncode == 2 and "ens.probs.parquet" in proc.stderr and not (tmp_path / "ens2.json").exists()


def test_ensemble_refuses_different_validation_splits(tmp_path):
    _synthetic(tmp_path, "a", signal=2.0, seed=1)
    _synthetic(tmp_path, "b", signal=1.0, seed=2, split_seed=7)
    proc = _ensemble(tmp_path, "a", "b")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: a and b have different validation/test splits (split_seed 42 vs 7)")
    assert not (tmp_path / "ens.json").exists() and not probs_path("ens", tmp_path).exists()
    # Same provenance but other reviews (e.g. another data set): still refused, by id.
    _synthetic(tmp_path, "c", signal=1.0, seed=3, n_val=500)
    proc = _ensemble(tmp_path, "a", "c")
    assert proc.returncode == 2 and "scored different validation reviews" in proc.stderr


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_missing_or_corrupt_probabilities_file_is_one_line_naming_it(tmp_path, damage):
    _synthetic(tmp_path, "a", signal=2.0, seed=1)
    path = probs_path("b", tmp_path)
    if damage == "garbage":
        path.write_text("not parquet at all\n")
    elif damage == "truncated":
        _synthetic(tmp_path, "b", signal=1.0, seed=2)
        path.write_bytes(path.read_bytes()[:200])
    proc = _ensemble(tmp_path, "a", "b")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: ") and ("no probabilities file" if damage == "missing" else "corrupt") in lines[0]
    assert not (tmp_path / "ens.json").exists()


def test_tiny_runs_line_up_by_id_nbsvm_textcnn_ensemble_and_docs(imdb_dir, imdb_tokenizer, tmp_path):
    """End to end on the fixture: a tiny TextCNN and a tiny NBSVM write probabilities that line up
    by review id with the data layer's validation/test split; the ensemble and the docs page read them."""
    from imdb_llm.imdb.data import load_imdb

    results = tmp_path / "results"
    proc = _run("train_textclf.py", "configs/imdb_textcnn.yaml", "--embedding_dim", "16", "--num_filters", "8", "--max_length", "64",
                "--num_train_epochs", "1", "--dataloader_num_workers", "0", "--embedding_init", "random", "--max_train_samples", "64",
                "--tokenizer_name", imdb_tokenizer, "--dataset_dir", imdb_dir, "--output_dir", tmp_path / "cnn",
                "--results_dir", results, "--results_name", "tiny-cnn", "--report_to", "none")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = _run("train_nbsvm.py", "configs/imdb_nbsvm.yaml", "--dataset_dir", imdb_dir, "--ngram_max", "1", "2", "--min_df", "1",
                "--C", "0.3", "1", "--output_dir", tmp_path / "nb", "--results_dir", results, "--results_name", "tiny-nb")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    dsets = load_imdb(dataset_dir=str(imdb_dir))
    cnn, cnn_meta = read_probs(probs_path("tiny-cnn", results))
    nb, nb_meta = read_probs(probs_path("tiny-nb", results))
    for split in ("validation", "test"):
        # Same reviews, same order of ids as the data layer (validation ids are train indices).
        assert list(cnn[split]["id"]) == list(nb[split]["id"]) == list(dsets[split]["id"])
        assert list(cnn[split]["label"]) == list(dsets[split]["label"])
    assert cnn_meta["split_seed"] == nb_meta["split_seed"] == 42 and cnn_meta["validation_ratio"] == 0.1
    assert set(cnn["validation"]["id"]).isdisjoint(set(dsets["train"]["id"]))  # validation was never trained on
    nb_result = json.loads((results / "tiny-nb.json").read_text())
    assert nb_result["metrics"]["n_test"] == 120 and len(nb_result["metrics"]["grid"]) == 4
    assert abs(float(((nb["test"]["logit"] > 0) == nb["test"]["label"]).mean()) - nb_result["metrics"]["test_accuracy"]) < 1e-9
    import joblib

    pipeline = joblib.load(tmp_path / "nb" / "model.joblib")
    assert np.allclose(pipeline.decision_function(dsets["test"]["text"][:5]), nb["test"]["logit"][:5], atol=1e-4)

    proc = _ensemble(results, "tiny-nb", "tiny-cnn", name="tiny-ens")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ens = json.loads((results / "tiny-ens.json").read_text())
    assert set(ens["weights"]) == {"tiny-nb", "tiny-cnn"} and ens["metrics"]["n_test"] == 120

    page = tmp_path / "page.md"
    page.write_text("# prose\n<!-- nbsvm-generated:start -->\nold\n<!-- nbsvm-generated:end -->\nmore prose\n")
    proc = _run("nbsvm_report.py", "--runs", "tiny-nb", "tiny-cnn", "--ensemble", "tiny-ens", "--results_dir", results,
                "--output", page, "--dataset_dir", imdb_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = page.read_text()
    assert text.startswith("# prose\n") and text.endswith("more prose\n") and "\nold\n" not in text
    both = [int(c.replace(",", "")) for c in text.split("**tiny-nb right** |")[1].splitlines()[0].strip(" |").split(" | ")]
    wrong = [int(c.replace(",", "")) for c in text.split("**tiny-nb wrong** |")[1].splitlines()[0].strip(" |").split(" | ")]
    assert sum(both) + sum(wrong) == 120 and "tiny-ens" in text


def test_nopretrain_ensemble_refuses_a_fine_tuned_member(tmp_path):
    _synthetic(tmp_path, "scratch", signal=2.0, seed=1)
    _synthetic(tmp_path, "bert", signal=2.0, seed=2)
    (tmp_path / "bert.json").write_text(json.dumps({"config": {"model_name_or_path": "bert-base-uncased"}}))
    proc = _ensemble(tmp_path, "scratch", "bert", name="x-nopretrain")
    assert proc.returncode == 2 and "bert started from a checkpoint" in proc.stderr and not (tmp_path / "x-nopretrain.json").exists()
    assert _ensemble(tmp_path, "scratch", "bert", name="x-any").returncode == 0


def test_pvdbow_trains_on_train_and_unlabelled_text_only_and_lines_up(imdb_dir, tmp_path):
    """PV-DBOW on the fixture: document vectors are learned for train + unlabelled reviews only
    (validation and test get theirs by inference), and its probabilities line up with the data layer."""
    from gensim.models.doc2vec import Doc2Vec

    from imdb_llm.imdb.data import load_imdb

    results = tmp_path / "results"
    proc = _run("train_pvdbow.py", "configs/imdb_pvdbow.yaml", "--dataset_dir", imdb_dir, "--vector_size", "8", "--epochs", "2",
                "--infer_epochs", "2", "--min_count", "1", "--C", "1", "--workers", "1", "--output_dir", tmp_path / "pv",
                "--results_dir", results, "--results_name", "tiny-pv")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    dsets = load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True)
    model = Doc2Vec.load(str(tmp_path / "pv" / "doc2vec.model"))
    assert len(model.dv) == len(dsets["train"]) + len(dsets["unsupervised"])
    assert sorted(p.name for p in (tmp_path / "pv").iterdir()) == ["classifier.joblib", "doc2vec.model", "train.log"]  # one file each, no .tmp
    probs, meta = read_probs(probs_path("tiny-pv", results))
    for split in ("validation", "test"):
        assert list(probs[split]["id"]) == list(dsets[split]["id"]) and list(probs[split]["label"]) == list(dsets[split]["label"])
    result = json.loads((results / "tiny-pv.json").read_text())
    assert result["metrics"]["n_test"] == 120 and meta["split_seed"] == 42
    assert abs(float(((probs["test"]["logit"] > 0) == probs["test"]["label"]).mean()) - result["metrics"]["test_accuracy"]) < 1e-9


def test_pvdbow_refuses_a_run_without_validation(imdb_dir, tmp_path):
    proc = _run("train_pvdbow.py", "configs/imdb_pvdbow.yaml", "--dataset_dir", imdb_dir, "--validation_ratio", "0", "--output_dir", tmp_path / "pv")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: --validation_ratio must be > 0: C is chosen on validation, never on test"
    assert not (tmp_path / "pv").exists()


def test_member_selection_drops_a_member_that_does_not_help_on_validation(tmp_path):
    """--select_members: every subset is scored by cross-validation on validation; pure noise is left out."""
    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    _synthetic(tmp_path, "fair", signal=1.0, seed=3)
    _synthetic(tmp_path, "noise", signal=0.0, seed=2)
    proc = _run("ensemble.py", "--runs", "good", "noise", "fair", "--select_members", "true", "--results_dir", tmp_path, "--results_name", "sel")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "sel.json").read_text())
    m = result["metrics"]
    assert "noise" not in result["members"] and "good" in result["members"] and m["candidates"] == ["good", "noise", "fair"]
    assert len(m["subsets"]) == 7 and {tuple(s["members"]) for s in m["subsets"]} >= {("good",), ("good", "noise", "fair")}
    best = max(s["validation_accuracy_cv"] for s in m["subsets"])
    assert [s["validation_accuracy_cv"] for s in m["subsets"] if s["members"] == result["members"]] == [best]
    # The headline cross-validated accuracy is the table's figure for the kept subset, not a second estimate.
    assert m["validation_accuracy_cv"] == best and sorted(result["weights"]) == sorted(result["members"])
    # Every candidate's accuracy alone, the dropped one too, from its own scores.
    noise = read_probs(probs_path("noise", tmp_path))[0]
    alone = {c["name"]: c for c in m["candidates_alone"]}
    assert list(alone) == ["good", "noise", "fair"]
    assert alone["noise"]["validation_accuracy"] == pytest.approx(((noise["validation"]["logit"] > 0) == noise["validation"]["label"]).mean())
    assert alone["good"]["test_accuracy"] > alone["fair"]["test_accuracy"] > alone["noise"]["test_accuracy"]


def _synthetic_refit(tmp_path, name, signal, seed, **kwargs):
    """A fake refit: the same test reviews as _synthetic's, no validation (trained on all of train)."""
    _synthetic(tmp_path, name, signal, seed, splits=("test",), validation_ratio=0.0, **kwargs)


def test_refits_score_test_with_the_weights_fit_on_the_held_out_members(tmp_path):
    """--refits: the stacker is fit on the members' validation scores and applied to their refits' test scores."""
    from sklearn.linear_model import LogisticRegression

    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    _synthetic(tmp_path, "fair", signal=1.0, seed=3)
    _synthetic_refit(tmp_path, "good-full", signal=3.0, seed=4)
    _synthetic_refit(tmp_path, "fair-full", signal=1.5, seed=5)
    proc = _run("ensemble.py", "--runs", "good", "fair", "--refits", "good=good-full", "fair=fair-full", "--results_dir", tmp_path, "--results_name", "rf")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "rf.json").read_text())["metrics"]
    # Recompute independently: weights from validation, scores from the refits' test log-odds.
    val = {n: read_probs(probs_path(n, tmp_path))[0]["validation"] for n in ("good", "fair")}
    test = {n: read_probs(probs_path(n, tmp_path))[0]["test"] for n in ("good", "fair", "good-full", "fair-full")}
    stacker = LogisticRegression(C=1.0, max_iter=1000).fit(np.column_stack([val["good"]["logit"], val["fair"]["logit"]]), val["good"]["label"])
    y = test["good"]["label"]
    refit_acc = (stacker.predict(np.column_stack([test["good-full"]["logit"], test["fair-full"]["logit"]])) == y).mean()
    heldout_acc = (stacker.predict(np.column_stack([test["good"]["logit"], test["fair"]["logit"]])) == y).mean()
    assert m["test_accuracy"] == pytest.approx(refit_acc) and m["test_accuracy_heldout_members"] == pytest.approx(heldout_acc)
    assert refit_acc != heldout_acc  # the two really are different test scores
    assert [(r["name"], r["refit"]) for r in m["members"]] == [("good", "good-full"), ("fair", "fair-full")]
    assert m["members"][0]["test_accuracy"] == pytest.approx(((test["good-full"]["logit"] > 0) == y).mean())
    _, meta = read_probs(probs_path("rf", tmp_path))
    assert meta["refits"] == {"good": "good-full", "fair": "fair-full"}


def test_a_member_mapped_to_itself_scores_test_itself(tmp_path):
    """member=member: a fine-tuned pretrained member that is not refit keeps its own test scores."""
    from sklearn.linear_model import LogisticRegression

    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    _synthetic(tmp_path, "pretrained", signal=1.0, seed=3)
    _synthetic_refit(tmp_path, "good-full", signal=3.0, seed=4)
    proc = _run("ensemble.py", "--runs", "good", "pretrained", "--refits", "good=good-full", "pretrained=pretrained",
                "--results_dir", tmp_path, "--results_name", "mixed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pretrained: validation" in proc.stdout and "not refit: scores test itself" in proc.stdout
    m = json.loads((tmp_path / "mixed.json").read_text())["metrics"]
    val = {n: read_probs(probs_path(n, tmp_path))[0]["validation"] for n in ("good", "pretrained")}
    test = {n: read_probs(probs_path(n, tmp_path))[0]["test"] for n in ("pretrained", "good-full")}
    stacker = LogisticRegression(C=1.0, max_iter=1000).fit(np.column_stack([val["good"]["logit"], val["pretrained"]["logit"]]), val["good"]["label"])
    expected = (stacker.predict(np.column_stack([test["good-full"]["logit"], test["pretrained"]["logit"]])) == test["good-full"]["label"]).mean()
    assert m["test_accuracy"] == pytest.approx(expected)
    assert [(r["name"], r["refit"]) for r in m["members"]] == [("good", "good-full"), ("pretrained", "pretrained")]


@pytest.mark.parametrize("damage, message", [
    ("fewer test reviews", "scored different test reviews (400 vs 300 ids)"),
    ("other test labels", "disagree on test labels for the same ids"),
])
def test_a_candidate_with_other_test_reviews_or_labels_is_refused(tmp_path, damage, message):
    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    if damage == "fewer test reviews":
        _synthetic(tmp_path, "odd", signal=1.0, seed=3, n_test=300)
    else:
        _synthetic(tmp_path, "odd", signal=1.0, seed=3)
        splits, meta = read_probs(probs_path("odd", tmp_path))
        test = splits["test"]
        labels = test["label"].copy()
        labels[:5] = 1 - labels[:5]
        scores = {"validation": tuple(splits["validation"][k] for k in ("id", "label", "logit")), "test": (test["id"], labels, test["logit"])}
        write_probs(probs_path("odd", tmp_path), scores, {"name": "odd", **SPLIT})
    proc = _ensemble(tmp_path, "good", "odd", "--select_members", "true")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-1000:]
    assert not (tmp_path / "ens.json").exists() and not probs_path("ens", tmp_path).exists()


@pytest.mark.parametrize("refits, message", [
    (["good=good-full"], "no refit for fair"),
    (["good=good-full", "fair=good"], "good.probs.parquet: trained with validation_ratio 0.1; a refit of fair is trained on all of train"),
    (["good=good-full", "fair=short-full"], "fair and its refit short-full scored different test reviews"),
    (["good=good-full", "good=fair-full"], "give each member once, as member=refit"),
])
def test_refits_that_do_not_fit_are_one_line_errors(tmp_path, refits, message):
    _synthetic(tmp_path, "good", signal=2.0, seed=1)
    _synthetic(tmp_path, "fair", signal=1.0, seed=3)
    _synthetic_refit(tmp_path, "good-full", signal=3.0, seed=4)
    _synthetic_refit(tmp_path, "fair-full", signal=1.5, seed=5)
    _synthetic_refit(tmp_path, "short-full", signal=1.5, seed=5, n_test=300)
    proc = _run("ensemble.py", "--runs", "good", "fair", "--refits", *refits, "--results_dir", tmp_path, "--results_name", "rf")
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], proc.stderr[-1000:]
    assert not (tmp_path / "rf.json").exists() and not probs_path("rf", tmp_path).exists()


def test_nbsvm_refit_on_all_of_train_needs_one_grid_point(imdb_dir, tmp_path):
    results = tmp_path / "results"
    proc = _run("train_nbsvm.py", "configs/imdb_nbsvm.yaml", "--dataset_dir", imdb_dir, "--validation_ratio", "0", "--ngram_max", "2",
                "--min_df", "1", "--C", "1", "--output_dir", tmp_path / "nb", "--results_dir", results, "--results_name", "nb-full")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    metrics = json.loads((results / "nb-full.json").read_text())["metrics"]
    splits, meta = read_probs(probs_path("nb-full", results))
    assert meta["validation_ratio"] == 0 and len(splits["validation"]["id"]) == 0 and len(splits["test"]["id"]) == metrics["n_test"] == 120
    from imdb_llm.imdb.data import load_imdb

    assert metrics["n_train"] == len(load_imdb(dataset_dir=str(imdb_dir), validation_ratio=0.0)["train"]) and metrics["n_validation"] == 0
    proc = _run("train_nbsvm.py", "configs/imdb_nbsvm.yaml", "--dataset_dir", imdb_dir, "--validation_ratio", "0", "--output_dir", tmp_path / "nb2",
                "--results_dir", results, "--results_name", "nb-grid")
    assert proc.returncode == 2 and "needs one value each for --ngram_max, --min_df and --C" in proc.stderr.strip().splitlines()[-1]
    assert not (results / "nb-grid.json").exists()


def test_refit_targets_use_what_validation_chose_for_their_member():
    """mk/nbsvm.mk's refit targets hard-code an epoch count / grid point: each must be what the
    member's own run chose on validation (its best evaluation epoch, NBSVM's chosen grid point)."""
    import re

    makefile = (REPO / "mk" / "nbsvm.mk").read_text()
    refits = dict(pair.split("=") for pair in re.search(r"^REFITS \?= (.*)$", makefile, re.M).group(1).split())
    assert refits, "no REFITS in mk/nbsvm.mk"
    for member, refit in refits.items():
        recipe = re.search(rf"^{re.escape(refit)}:.*\n\t(.*)$", makefile, re.M).group(1)
        assert f"--results_name {refit}" in recipe and ("--validation_ratio 0" in recipe or "$(REFIT)" in recipe), refit
        result = json.loads((REPO / "results" / f"{member}.json").read_text())
        if "chosen" in result["metrics"]:  # NBSVM: the grid point
            chosen = result["metrics"]["chosen"]
            assert f"--ngram_max {chosen['ngram_max']} --min_df {chosen['min_df']} --C {chosen['C']}" in recipe, refit
            continue
        curve = [(h["eval_accuracy"], h["epoch"]) for h in result["log_history"] if "eval_accuracy" in h]
        best_epoch = max(curve, key=lambda c: (c[0], -c[1]))[1]  # the first epoch reaching the best accuracy (load_best_model_at_end's pick)
        assert f"--num_train_epochs {int(best_epoch)} " in recipe, (refit, best_epoch)
        seed = result["config"].get("seed", 42)
        assert (f"--seed {seed} " in recipe) == (seed != 42), (refit, seed)


def test_probabilities_saved_by_earlier_versions_still_read():
    """results/*.probs.parquet are committed and read by the ensemble for years: the file format
    (its columns and provenance key) must not change when the code moves (a 2026-12 file, 6 rows)."""
    splits, meta = read_probs(Path(__file__).parent / "fixtures" / "probs_saved_2026-12.parquet")
    assert [len(splits[s]["id"]) for s in ("validation", "test")] == [3, 3]
    assert list(splits["test"]["id"]) == [0, 1, 2] and list(splits["test"]["label"]) == [0, 0, 0]
    assert (splits["test"]["logit"] < 0).all() and meta
