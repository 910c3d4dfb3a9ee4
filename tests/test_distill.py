"""Distilling a teacher into the self-built BERT/GPT (imdb_llm.imdb.distill, scripts/score_teacher.py,
run_scratch --teacher): the loss by hand, the join by review id, held-out reviews kept out of every
training stage, and a kill in the teacher-guided stage."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imdb_llm.imdb.data import load_imdb, pretraining_texts
from imdb_llm.imdb.distill import distillation_loss, distillation_sets, read_teacher, soft_targets, write_teacher

REPO = Path(__file__).resolve().parents[1]


def test_distillation_loss_matches_a_hand_computed_case():
    import torch

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    # Row 1: softmax([2, 0]) = [e^2, 1] / (e^2 + 1); row 2: softmax([0, 1]) = [1, e] / (1 + e).
    row1 = -(0.75 * math.log(math.e**2 / (math.e**2 + 1)) + 0.25 * math.log(1 / (math.e**2 + 1)))
    row2 = -(0.5 * math.log(1 / (1 + math.e)) + 0.5 * math.log(math.e / (1 + math.e)))
    assert distillation_loss(logits, targets).item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    # At T = 2 both distributions soften and the loss is scaled by T^2 = 4.
    p1 = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    p2 = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()
    at_t2 = 4 * (-(0.75 * np.log(p1[0]) + 0.25 * np.log(p1[1])) - (0.5 * np.log(p2[0]) + 0.5 * np.log(p2[1]))) / 2
    assert distillation_loss(logits, targets, temperature=2.0).item() == pytest.approx(at_t2, rel=1e-6)


def test_soft_targets_mix_gold_labels_and_leave_unlabelled_reviews_to_the_teacher():
    teacher = np.array([0.0, math.log(3.0), math.log(3.0)])  # P(pos) = 0.5, 0.75, 0.75
    got = soft_targets(teacher, np.array([1, 0, -1]), alpha=0.5, temperature=1.0)
    np.testing.assert_allclose(got, [[0.25, 0.75], [0.625, 0.375], [0.25, 0.75]], rtol=1e-6)
    # T = 2 halves the log-odds: P(pos) = sigmoid(log(3) / 2) = sqrt(3) / (1 + sqrt(3)).
    p = math.sqrt(3) / (1 + math.sqrt(3))
    np.testing.assert_allclose(soft_targets(teacher[1:2], None, 0.5, 2.0), [[1 - p, p]], rtol=1e-6)


# ------------------------------------------------------------------------------ held-out reviews


@pytest.fixture
def imdb_with_copies(imdb_dir, tmp_path):
    """The fixture with two test reviews copied word for word into unsupervised and one into train,
    as IMDB itself does (270 and 123 times)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "imdb"
    out.mkdir()
    tables = {split: pq.read_table(imdb_dir / f"{split}-00000-of-00001.parquet") for split in ("train", "test", "unsupervised")}
    test_texts = tables["test"].column("text").to_pylist()
    unsup = tables["unsupervised"].to_pydict()
    unsup["text"][:2] = test_texts[:2]
    train = tables["train"].to_pydict()
    train["text"][0] = test_texts[2]
    tables["unsupervised"], tables["train"] = pa.table(unsup), pa.table(train)
    for split, table in tables.items():
        pq.write_table(table, out / f"{split}-00000-of-00001.parquet")
    return out, test_texts[:3]


def test_no_held_out_review_reaches_pretraining_or_distillation(imdb_with_copies):
    folder, copied = imdb_with_copies
    dsets = load_imdb(dataset_dir=str(folder), with_unsupervised=True)
    held_out = set(dsets["test"]["text"]) | set(dsets["validation"]["text"])
    pretraining = pretraining_texts(dsets, drop_texts_of=("validation", "test"))["text"]
    assert not held_out & set(pretraining)
    assert len(pretraining) == len(pretraining_texts(dsets)) - sum(t in set(copied) for t in pretraining_texts(dsets)["text"])
    sets = distillation_sets(dsets)
    assert set(sets) == {"train", "unsupervised"}
    assert not held_out & (set(sets["train"]["text"]) | set(sets["unsupervised"]["text"]))
    # By id: only train-minus-validation ids, never a validation id, and the copied unlabelled rows are gone.
    assert set(sets["train"]["id"]) <= set(dsets["train"]["id"]) and not set(sets["train"]["id"]) & set(dsets["validation"]["id"])
    assert {0, 1} - set(sets["unsupervised"]["id"]) == {0, 1}


# ------------------------------------------------------------------------------ the teacher file


def _fake_teacher(dsets, path, drop=None, add=None):
    """Teacher scores for exactly the reviews a student trains on (or with one id dropped / added)."""
    rng = np.random.default_rng(0)
    logits = {}
    for split, ds in distillation_sets(dsets).items():
        ids = list(ds["id"])
        if drop == split:
            ids = ids[1:]
        if add == split:
            ids = ids + [int(dsets["validation"]["id"][0])] if split == "train" else ids + [10**6]
        logits[split] = (ids, rng.normal(size=len(ids)) * 3)
    return write_teacher(path, logits, {"teacher": "fake-teacher", "teacher_test_accuracy": 0.5, "scoring_seconds": 12.5})


def test_teacher_file_round_trip(imdb_dir, tmp_path):
    dsets = load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True)
    path = _fake_teacher(dsets, tmp_path / "t.parquet")
    scores, meta = read_teacher(path)
    assert meta["teacher"] == "fake-teacher" and set(scores) == {"train", "unsupervised"}
    assert set(scores["train"]) == set(dsets["train"]["id"]) and len(scores["unsupervised"]) == len(dsets["unsupervised"])


def _scratch(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "run_scratch.py"), *map(str, args)], capture_output=True, text=True, env=env, **kwargs)


def _tiny_dsets(imdb_dir):
    """The splits configs/scratch_*_tiny.yaml trains on."""
    return load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True, max_train_samples=64, max_eval_samples=32, max_test_samples=64,
                     max_unsupervised_samples=128)


def _tiny(track, imdb_dir, tokenizer, out, *extra):
    return [REPO / "configs" / f"scratch_{track}_tiny.yaml", "--dataset_dir", imdb_dir, "--tokenizer_name", tokenizer,
            "--output_dir", out / "run", "--results_name", f"distil-{track}", "--results_dir", out / "results", *extra]


@pytest.mark.parametrize("drop, add, message", [
    ("train", None, "no teacher score for 1 train review(s)"),
    (None, "train", "1 train review(s) the student does not train on"),  # a validation review: the teacher saw other splits
    (None, "unsupervised", "1 unsupervised review(s) the student does not train on"),
])
def test_teacher_with_a_missing_or_extra_id_is_one_line_and_writes_nothing(imdb_dir, imdb_tokenizer, tmp_path, drop, add, message):
    dsets = _tiny_dsets(imdb_dir)
    teacher = _fake_teacher(dsets, tmp_path / "t.parquet", drop=drop, add=add)
    proc = _scratch(*_tiny("bert", imdb_dir, imdb_tokenizer, tmp_path, "--pretrain_max_steps", 0, "--teacher", teacher))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert not (tmp_path / "results").exists() and not (tmp_path / "run" / "classify" / "all_results.json").exists()


def test_missing_teacher_file_fails_before_any_work(imdb_dir, imdb_tokenizer, tmp_path):
    proc = _scratch(*_tiny("bert", imdb_dir, imdb_tokenizer, tmp_path, "--teacher", tmp_path / "nope.parquet"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.parquet'}: no teacher file (make imdb-teacher writes it)"
    assert not (tmp_path / "run").exists()


def test_pretrain_only_then_distil_from_it_counts_every_stage(imdb_dir, imdb_tokenizer, tmp_path):
    """The CPU recipe's stage layout on the fixture: one pretraining run, a classifier started from
    it with a teacher; train_seconds adds pretraining, teacher scoring and fine-tuning."""
    pre = _scratch(*_tiny("gpt", imdb_dir, imdb_tokenizer, tmp_path / "pre", "--pretrain_only", "true", "--clm_loss_fraction", 0.5))
    assert pre.returncode == 0, pre.stderr[-2000:]
    final = tmp_path / "pre" / "run" / "pretrain" / "final"
    stage1 = json.loads((final / "pretrain_metrics.json").read_text())
    assert not (tmp_path / "pre" / "results").exists()  # no classifier, no result
    assert json.loads((final / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]

    dsets = _tiny_dsets(imdb_dir)
    teacher = _fake_teacher(dsets, tmp_path / "t.parquet")
    run = _scratch(*_tiny("gpt", imdb_dir, imdb_tokenizer, tmp_path, "--pretrained_model", final, "--teacher", teacher))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "distil-gpt.json").read_text())
    m = result["metrics"]
    assert m["teacher"] == "fake-teacher" and m["teacher_scoring_seconds"] == 12.5
    assert m["n_train_labelled"] == 64 and m["n_train_unlabelled"] == 128 and m["n_test"] == 64
    assert m["pretrain_tokens"] == stage1["pretrain_tokens"] > 0 and m["precision"]
    assert result["train_seconds"] == pytest.approx(m["finetune_seconds"] + 12.5 + stage1["pretrain_seconds"], abs=0.02)

    # A pretraining folder of another shape is refused in one line.
    other = _scratch(*_tiny("gpt", imdb_dir, imdb_tokenizer, tmp_path / "other", "--pretrained_model", final, "--hidden_size", 64))
    assert other.returncode == 2 and "this config describes" in other.stderr.strip().splitlines()[-1]


def test_kill_during_the_teacher_guided_stage_resumes_to_the_same_step_count(imdb_dir, imdb_tokenizer, tmp_path):
    dsets = _tiny_dsets(imdb_dir)
    teacher = _fake_teacher(dsets, tmp_path / "t.parquet")
    # 12 batches of 16 (64 labelled + 128 unlabelled reviews), a checkpoint every 2 steps.
    extra = ["--pretrain_max_steps", 0, "--teacher", teacher, "--save_strategy", "steps", "--save_steps", 2, "--save_total_limit", 10,
             "--eval_strategy", "no", "--load_best_model_at_end", "false", "--logging_steps", 1]
    argv = [sys.executable, str(REPO / "scripts" / "run_scratch.py"), *map(str, _tiny("bert", imdb_dir, imdb_tokenizer, tmp_path, *extra))]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    classify = tmp_path / "run" / "classify"
    deadline = time.time() + 240
    while time.time() < deadline and not (classify / "checkpoint-4" / "trainer_state.json").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (classify / "checkpoint-4").is_dir() and not (classify / "all_results.json").exists()

    again = _scratch(*_tiny("bert", imdb_dir, imdb_tokenizer, tmp_path, *extra))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Stage 2: resuming from" in again.stderr + again.stdout
    state = json.loads((classify / "all_results.json").read_text())
    result = json.loads((tmp_path / "results" / "distil-bert.json").read_text())
    assert result["metrics"]["n_train_unlabelled"] == 128
    steps = [h["step"] for h in result["log_history"] if "loss" in h]
    assert max(steps) == 12 and state["train_seconds"] > 0


# ------------------------------------------------------------------------------ scoring a teacher


def _py(script, *args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_score_teacher_combines_the_refits_with_the_ensemble_weights(imdb_dir, tmp_path):
    """A one-member ensemble of a tiny NBSVM refit: the teacher file holds weight x the refit's
    log-odds + intercept for exactly the reviews a student trains on, and names the teacher's test
    accuracy as computed from the refit's saved test scores."""
    import joblib

    from imdb_llm.probs import probs_path, read_probs

    results = tmp_path / "results"
    proc = _py("train_nbsvm.py", REPO / "configs" / "imdb_nbsvm.yaml", "--dataset_dir", imdb_dir, "--validation_ratio", "0", "--ngram_max", "2",
               "--min_df", "1", "--C", "1", "--output_dir", tmp_path / "nb", "--results_dir", results, "--results_name", "nb-full")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ensemble = {"name": "tiny-ensemble", "metrics": {"members": [{"name": "nb", "refit": "nb-full", "weight": 0.5}], "intercept": 0.25}}
    (results / "tiny-ensemble.json").write_text(json.dumps(ensemble))
    out = tmp_path / "teacher.parquet"
    proc = _py("score_teacher.py", "--ensemble", results / "tiny-ensemble.json", "--output", out, "--dataset_dir", imdb_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reproduces its recorded scores" in proc.stdout

    scores, meta = read_teacher(out)
    dsets = load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True)
    sets = distillation_sets(dsets)
    pipeline = joblib.load(tmp_path / "nb" / "model.joblib")
    for split, ds in sets.items():
        assert sorted(scores[split]) == sorted(ds["id"])
        expected = 0.5 * pipeline.decision_function(ds["text"]) + 0.25
        np.testing.assert_allclose([scores[split][i] for i in ds["id"]], expected, rtol=1e-5, atol=1e-5)
    test = read_probs(probs_path("nb-full", results))[0]["test"]
    assert meta["teacher"] == "tiny-ensemble" and meta["scoring_seconds"] > 0
    assert meta["teacher_test_accuracy"] == pytest.approx(float(((0.5 * test["logit"] + 0.25 > 0) == test["label"]).mean()))


def test_score_teacher_refuses_an_ensemble_without_refits(tmp_path):
    (tmp_path / "e.json").write_text(json.dumps({"name": "e", "metrics": {"members": [{"name": "nb", "refit": None, "weight": 1.0}], "intercept": 0}}))
    proc = _py("score_teacher.py", "--ensemble", tmp_path / "e.json", "--output", tmp_path / "t.parquet")
    assert proc.returncode == 2 and "every member needs a refit" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "t.parquet").exists()


def test_score_teacher_as_fit_scores_with_members_that_never_saw_validation(imdb_dir, tmp_path):
    """--members as_fit: the member run itself (fit on train minus validation) scores, not a refit."""
    import joblib

    results = tmp_path / "results"
    proc = _py("train_nbsvm.py", REPO / "configs" / "imdb_nbsvm.yaml", "--dataset_dir", imdb_dir, "--ngram_max", "2", "--min_df", "1", "--C", "1",
               "--output_dir", tmp_path / "nb", "--results_dir", results, "--results_name", "nb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ensemble = {"name": "tiny-ensemble", "metrics": {"members": [{"name": "nb", "refit": None, "weight": 1.0}], "intercept": 0.0}}
    (results / "tiny-ensemble.json").write_text(json.dumps(ensemble))
    out = tmp_path / "teacher.parquet"
    refused = _py("score_teacher.py", "--ensemble", results / "tiny-ensemble.json", "--output", out, "--dataset_dir", imdb_dir)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith("or score with --members as_fit") and not out.exists()
    proc = _py("score_teacher.py", "--ensemble", results / "tiny-ensemble.json", "--output", out, "--dataset_dir", imdb_dir, "--members", "as_fit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores, meta = read_teacher(out)
    assert meta["teacher"] == "tiny-ensemble (members as fit, no validation review)" and meta["members"][0]["scored_by"] == "nb"
    train = distillation_sets(load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True))["train"]
    expected = joblib.load(tmp_path / "nb" / "model.joblib").decision_function(train["text"])
    np.testing.assert_allclose([scores["train"][i] for i in train["id"]], expected, rtol=1e-5, atol=1e-5)
