"""The LSTM language model pretrained on IMDB text and its hand-over to the BiLSTM classifier."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imdb_llm.cli import UserError
from imdb_llm.imdb.models import BiLSTMConfig, BiLSTMForSequenceClassification
from imdb_llm.imdb.models.lstm_lm import frequency_ranks, load_lm_into_classifier
from tiny_models import make_tiny_lstm_lm

REPO = Path(__file__).resolve().parents[1]
VOCAB, DIM, HIDDEN = 40, 8, 16  # make_tiny_lstm_lm's sizes


def test_frequency_ranks_most_frequent_first_ties_by_id():
    # counts by id:      0  1  2  3
    ranks = frequency_ranks(np.array([5, 0, 9, 5]))
    assert ranks.tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="permutation"):
        make_tiny_lstm_lm().set_frequency_ranks(np.zeros(VOCAB, dtype=int))


def test_loss_is_mean_nll_of_next_token_forward_and_previous_token_backward():
    lm = make_tiny_lstm_lm()
    x = torch.randint(1, VOCAB, (3, 7))
    with torch.no_grad():
        loss = lm(input_ids=x).loss
        emb = lm.embeddings(x)
        forward_states, _ = lm.forward_lstms[0](emb)
        # backward states put back in reading order: position t has read tokens t..end
        backward_states = lm.backward_lstms[0](emb.flip(1))[0].flip(1)
        rank = lm.frequency_rank
        logp_forward = lm.softmax.log_prob(forward_states.reshape(-1, HIDDEN)).view(3, 7, VOCAB)
        logp_backward = lm.softmax.log_prob(backward_states.reshape(-1, HIDDEN)).view(3, 7, VOCAB)
        nll_next = -logp_forward[:, :-1].gather(2, rank[x[:, 1:]].unsqueeze(-1))  # state at t -> token t+1
        nll_previous = -logp_backward[:, 1:].gather(2, rank[x[:, :-1]].unsqueeze(-1))  # state at t -> token t-1
    expected = torch.cat([nll_next.flatten(), nll_previous.flatten()]).mean()
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)
    # labels, when given, are what is predicted (HF causal-LM convention: same ids, shifted inside)
    assert torch.allclose(lm(input_ids=x, labels=x).loss, loss)


def test_classifier_takes_the_lms_embeddings_and_lstms(tmp_path):
    lm = make_tiny_lstm_lm(seed=1)
    lm.save_pretrained(tmp_path / "lm")
    classifier = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=VOCAB, embedding_dim=DIM, hidden_size=HIDDEN, num_layers=1))
    head_before = classifier.classifier.weight.clone()
    assert load_lm_into_classifier(classifier, str(tmp_path / "lm")) == 1 + 4 + 4  # embeddings, 2 x (2 weights + 2 biases)
    lm_state, clf_state = lm.state_dict(), classifier.state_dict()
    for name in ("embeddings.weight", "forward_lstms.0.weight_hh_l0", "backward_lstms.0.weight_ih_l0", "backward_lstms.0.bias_hh_l0"):
        assert torch.equal(clf_state[name], lm_state[name]), name
    assert torch.equal(classifier.classifier.weight, head_before)  # the classifier head is its own

    wrong = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=VOCAB, embedding_dim=DIM, hidden_size=HIDDEN + 2, num_layers=1))
    with pytest.raises(UserError, match="hidden_size must match") as error:
        load_lm_into_classifier(wrong, str(tmp_path / "lm"))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="not a folder"):
        load_lm_into_classifier(classifier, str(tmp_path / "missing"))


def test_make_targets_pretrain_then_classify(imdb_tokenizer, imdb_dir, tmp_path):
    """make imdb-lstm-lm then make imdb-lstm-lminit on the fixture, tiny sizes: perplexity measured,
    the classifier starts from the LM, the result names it."""
    lm_dir, clf_dir, results = tmp_path / "lm", tmp_path / "clf", tmp_path / "results"
    common = f"--tokenizer_name {imdb_tokenizer} --results_dir {results} --embedding_dim 16 --hidden_size 16"
    runs = {
        "imdb-lstm-lm": f"{common} --output_dir {lm_dir} --word2vec_cache none --block_size 32 --per_device_train_batch_size 8 "
                        f"--max_steps 4 --eval_steps 2 --save_steps 2 --logging_steps 1",
        "imdb-lstm-lminit": f"{common} --output_dir {clf_dir} --init_from_lm {lm_dir} --max_length 64 --num_train_epochs 1 "
                            f"--per_device_train_batch_size 16 --max_train_samples 64 --dataloader_num_workers 0 --logging_steps 2",
    }
    for target, args in runs.items():
        proc = subprocess.run(["make", target, f"IMDB_DIR={imdb_dir}", f"PY={sys.executable}", f"ARGS={args}"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, target + proc.stdout[-2000:] + proc.stderr[-3000:]
    lm_result = json.loads((results / "imdb-lstm-lm.json").read_text())
    metrics = lm_result["metrics"]
    # A 4-step LM on a 2,000-token vocabulary: perplexity is finite and below the uniform guess.
    assert 1 < metrics["validation_perplexity"] < 2000 and metrics["pretrain_tokens"] == 4 * 8 * 32
    assert (lm_dir / "model.safetensors").is_file() and lm_result["config"]["lm"]["block_size"] == 32
    result = json.loads((results / "imdb-lstm-lminit.json").read_text())
    assert result["metrics"]["n_test"] == 120 and result["config"]["model"]["init_from_lm"] == str(lm_dir)
    assert "first-layer LSTMs (9 tensors) from the language model" in (results / "imdb-lstm-lminit.log").read_text()


def test_init_from_lm_needs_a_bilstm(imdb_tokenizer, imdb_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/train_textclf.py", "configs/imdb_lstm_lminit.yaml", "--model_type", "textcnn",
         "--tokenizer_name", str(imdb_tokenizer), "--dataset_dir", str(imdb_dir), "--output_dir", str(tmp_path / "out"),
         "--results_dir", str(tmp_path / "r")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == "error: --init_from_lm needs --model_type bilstm, got 'textcnn'"
    assert not (tmp_path / "r").exists()


def test_pretraining_resumes_from_its_last_checkpoint(imdb_tokenizer, imdb_dir, tmp_path, monkeypatch):
    """A killed run started again with the same command continues where its last checkpoint left off,
    counts the time of both parts, and refuses a checkpoint saved with other settings."""
    import pretrain_lstm_lm
    from transformers import TrainerCallback

    monkeypatch.setenv("RUN_COMMAND", "pytest")
    out, results = tmp_path / "lm", tmp_path / "results"
    flags = ["configs/imdb_lstm_lm.yaml", "--tokenizer_name", str(imdb_tokenizer), "--dataset_dir", str(imdb_dir), "--output_dir", str(out),
             "--results_dir", str(results), "--word2vec_cache", "none", "--embedding_dim", "16", "--hidden_size", "16", "--block_size", "32",
             "--per_device_train_batch_size", "8", "--max_steps", "4", "--save_steps", "2", "--eval_steps", "100", "--logging_steps", "1"]

    class Kill(TrainerCallback):  # stands in for a SIGKILL just after step 3 (checkpoint-2 is on disk)
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    monkeypatch.chdir(REPO)
    with pytest.raises(KeyboardInterrupt):
        pretrain_lstm_lm.main(flags, extra_callbacks=[Kill()])
    before = json.loads((out / "checkpoint-2" / "train_clock.json").read_text())["train_seconds"]
    with pytest.raises(SystemExit) as exc:  # other settings: continuing would mix two runs into one result
        pretrain_lstm_lm.main(flags + ["--learning_rate", "1e-2"])
    assert exc.value.code == 2 and not (results / "imdb-lstm-lm.json").exists()
    pretrain_lstm_lm.main(flags)
    result = json.loads((results / "imdb-lstm-lm.json").read_text())
    log = (results / "imdb-lstm-lm.log").read_text()
    assert f"resuming from {out / 'checkpoint-2'}" in log and "[stopped; the next sitting resumed from checkpoint-2]" in log
    assert log.count("parameters; embeddings from") == 2  # the first sitting's log (to its checkpoint) is kept too
    assert result["metrics"]["pretrain_resumed_from_step"] == 2 and result["metrics"]["pretrain_steps_this_session"] == 2
    assert result["train_seconds"] > before > 0
