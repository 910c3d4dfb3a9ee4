"""The results writer every script uses (imdb_llm.results): the provenance behind every README number."""

import json

import pytest

from imdb_llm import results
from imdb_llm.results import REQUIRED_KEYS, trim_log, write_result


def test_write_result_holds_every_required_key_and_the_trimmed_log(tmp_path, monkeypatch):
    monkeypatch.setenv("RUN_COMMAND", "make imdb-textcnn ARGS='--seed 1'")
    log = "step 1\r 10%|#         | 1/10 [00:01<00:09, 1.0it/s]\r100%|##########| 10/10\nloss 0.5\n\n\n\x1b[32mdone\x1b[0m\n"
    path = write_result("run-1", {"test_accuracy": 0.9, "n_test": 10}, headline="test_accuracy", config={"lr": 1e-3, "sizes": (1, 2)},
                        train_seconds=12.3456, log_text=log, results_dir=tmp_path, extra={"parameters": 7})
    data = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(data) and data["name"] == "run-1" and data["parameters"] == 7
    assert data["command"] == "make imdb-textcnn ARGS='--seed 1'" and data["train_seconds"] == 12.35
    assert data["config"] == {"lr": 1e-3, "sizes": [1, 2]}
    assert (tmp_path / "run-1.log").read_text() == "loss 0.5\n\ndone\n"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["", "../escape", "a b", "-leading"])
def test_bad_names_are_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(ValueError, match="result name"):
        write_result(name, {"x": 1}, headline="throughput", results_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_empty_metrics_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="'metrics' must be a non-empty mapping"):
        write_result("empty", {}, headline="throughput", results_dir=tmp_path)
    assert not (tmp_path / "empty.json").exists()


def test_cpu_device_says_when_fewer_threads_than_cores_were_used(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(results.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert results.device_description().startswith("cpu (2 cores, ") and results.device_description().endswith(", 1 torch thread)")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert "thread" not in results.device_description()


def test_trim_log_keeps_text_and_drops_only_progress_redraws():
    # What the Trainer really writes: bar redraws, then the bar is blanked and the loss printed over it.
    text = ("Epoch 1\n  5%|5         | 99/2112 [02:33<14:22,  2.33it/s]\r  5%|5         | 100/2112 [02:34<14:22,  2.33it/s]"
            "\r                    \r{'loss': 0.7}\n  5%|5         | 101/2112 [02:35<14:22,  2.33it/s]\nkept: 3/4 [ok]\n")
    assert trim_log(text) == "Epoch 1\n{'loss': 0.7}\nkept: 3/4 [ok]\n"


def test_git_sha_is_the_commit_the_run_started_from(tmp_path, monkeypatch):
    """A long run whose working tree moves on meanwhile records the code it ran, not the later commit."""
    from imdb_llm import results

    monkeypatch.setattr(results, "_CODE_SHA", None)
    monkeypatch.setattr(results, "git_sha", lambda cwd=None: "aaaa")
    with results.capture_log(None):
        monkeypatch.setattr(results, "git_sha", lambda cwd=None: "bbbb-dirty")  # committed and edited during the run
        path = results.write_result("run", {"test_accuracy": 0.5, "n_test": 2}, headline="test_accuracy", results_dir=tmp_path)
    assert json.loads(path.read_text())["git_sha"] == "aaaa"


def test_atomic_folder_replaces_only_when_the_block_succeeds(tmp_path):
    from imdb_llm.results import atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
        assert not target.exists()  # nothing where a reader looks until the block is done
    assert (target / "weights.bin").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (target / "weights.bin").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_folder(target) as tmp:
        (tmp / "other.bin").write_text("v2")
    assert [p.name for p in target.iterdir()] == ["other.bin"]  # replaced whole, not merged
