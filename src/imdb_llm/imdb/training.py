"""What every IMDB classification script does around ``Trainer``: metrics, plots, the final test
evaluation, ``all_results.json``, predictions and the ``results/`` entry."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from imdb_llm.probs import logits_to_log_odds, probs_path, split_provenance, write_probs
from imdb_llm.results import ResultArguments, atomic_write_text, write_result


_METRICS = None


def _load_metrics():
    """``evaluate``'s accuracy/F1 when they load (cached or online), else the same sklearn calls
    they wrap: ``evaluate.load`` fetches metric scripts from the hub, which is not always there."""
    global _METRICS
    if _METRICS is None:
        try:
            import evaluate

            _METRICS = evaluate.combine(["accuracy", "f1"])
        except Exception:
            _METRICS = False
    return _METRICS


def classification_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    metrics = _load_metrics()
    if metrics:
        out = metrics.compute(predictions=predictions, references=references)
        return {k: float(v) for k, v in out.items()}
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(references, predictions)), "f1": float(f1_score(references, predictions))}


def compute_metrics(eval_pred) -> dict[str, float]:
    """``Trainer`` hook: logits -> accuracy and F1."""
    logits, labels = eval_pred
    if isinstance(logits, tuple):
        logits = logits[0]
    return classification_metrics(np.argmax(logits, axis=-1), labels)


def plot_loss_curve(log_history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], path: str | os.PathLike, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trained_tokens(train_dataset, samples: float) -> int:
    """Real (unpadded) tokens in ``samples`` reviews drawn from ``train_dataset``: the sampler draws
    every review once per epoch, so ``samples`` x the mean review length (exact for whole epochs)."""
    lengths = [len(ids) for ids in train_dataset["input_ids"]]
    return int(round(samples * sum(lengths) / len(lengths))) if lengths else 0


VALIDATION_SUMMARY = "validation_summary.json"


def write_validation_summary(trainer, output_dir: str | os.PathLike, *, train_seconds: float, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a recipe search compares, without touching test: the validation accuracy at every
    evaluation, the best one, and the training time. Written last, so its presence means done."""
    curve = [{"step": h["step"], "epoch": round(float(h["epoch"]), 3), "accuracy": h["eval_accuracy"]}
             for h in trainer.state.log_history if "eval_accuracy" in h]
    summary = {
        **(fields or {}),
        "best_validation_accuracy": max((c["accuracy"] for c in curve), default=None),
        "validation_curve": curve,
        "n_validation": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
        "train_seconds": round(train_seconds, 2),
        "global_step": trainer.state.global_step,
    }
    atomic_write_text(Path(output_dir) / VALIDATION_SUMMARY, json.dumps(summary, indent=2))
    return summary


def finish_classification_run(
    trainer,
    test_dataset,
    *,
    train_seconds: float,
    config: dict[str, Any],
    result_args: ResultArguments,
    log_buffer=None,
    label_names: list[str] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    texts: list[str] | None = None,
    validation_dataset=None,
    data_args: Any = None,
    review_ids: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Evaluate once on test, save model/tokenizer/plots/predictions, write the result file.

    With a ``results_name`` it also writes ``results/<name>.probs.parquet``: validation and test
    probabilities keyed by review id (imdb_llm.probs), so ensembles and error analyses can reuse
    the run without its model. Ids come from the datasets' ``id`` column, else from ``review_ids``
    (``{"validation": [...], "test": [...]}``, for scripts whose encoding drops the column).

    Only the main process writes files; all processes take part in ``predict``.
    """
    output_dir = Path(trainer.args.output_dir)
    label_names = label_names or ["neg", "pos"]
    # Validation first (the model is already the best checkpoint): its scores are what an ensemble
    # may fit weights on. Every process must take part, so this runs before the main-process check.
    val_prediction = None
    with _predictions_in_dataset_order(trainer):
        if result_args.results_name and validation_dataset is not None and len(validation_dataset):
            val_prediction = trainer.predict(validation_dataset, metric_key_prefix="validation")
        prediction = trainer.predict(test_dataset, metric_key_prefix="test")
    logits = _logits(prediction)
    y_pred = np.argmax(logits, axis=-1)
    y_true = prediction.label_ids
    metrics = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in prediction.metrics.items()}
    metrics["n_test"] = int(len(y_true))
    if extra_metrics:
        metrics.update(extra_metrics)
    if not trainer.is_world_process_zero():
        return metrics

    trainer.save_model(str(output_dir))
    trainer.save_metrics("test", metrics)
    all_results = {**{k: v for h in trainer.state.log_history[-1:] for k, v in h.items()}, **metrics, "train_seconds": round(train_seconds, 2)}
    atomic_write_text(output_dir / "all_results.json", json.dumps(all_results, indent=2))
    rows = []
    for i, (p, t) in enumerate(zip(y_pred.tolist(), y_true.tolist())):
        row = {"index": i, "label": int(t), "prediction": int(p), "correct": bool(p == t)}
        if texts is not None:
            row["text"] = texts[i][:200]
        rows.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(output_dir / "test_predictions.jsonl", "".join(rows))
    plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png")
    plot_confusion_matrix(y_true, y_pred, label_names, output_dir / "confusion_matrix.png", f"test accuracy {metrics.get('test_accuracy', 0):.4f}")

    if result_args.results_name:
        write_result(
            result_args.results_name,
            metrics,
            headline="test_accuracy",
            config=config,
            train_seconds=train_seconds,
            log_text=log_buffer.getvalue() if log_buffer is not None else None,
            results_dir=result_args.results_dir,
            extra={"parameters": count_parameters(trainer.model), "log_history": trainer.state.log_history},
        )
        if logits.ndim == 2 and logits.shape[1] == 2:
            splits = {"test": (_ids(test_dataset, review_ids, "test"), y_true, logits_to_log_odds(logits))}
            if val_prediction is not None:
                splits["validation"] = (_ids(validation_dataset, review_ids, "validation"), val_prediction.label_ids,
                                        logits_to_log_odds(_logits(val_prediction)))
            provenance = {"name": result_args.results_name, **split_provenance(data_args if data_args is not None else config)}
            path = write_probs(probs_path(result_args.results_name, result_args.results_dir), splits, provenance)
            print(f"probabilities ({', '.join(f'{k} {len(v[0])}' for k, v in splits.items())}) written to {path}")
    print(f"test accuracy {metrics.get('test_accuracy', float('nan')):.4f} on {metrics['n_test']} reviews; outputs in {output_dir}")
    return metrics


def classification_trainer(model, training_args, encoded: dict, tokenizer, collator, callbacks: list):
    """The ``Trainer`` of an IMDB classifier: train on ``encoded["train"]``, evaluate on its validation split
    (when it has one) with accuracy and F1."""
    from transformers import Trainer

    return Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"] if len(encoded["validation"]) else None,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )


def _logits(prediction) -> np.ndarray:
    """The logits of a ``trainer.predict`` output (models that return more than logits give a tuple)."""
    return prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions


@contextmanager
def _predictions_in_dataset_order(trainer):
    """Make ``trainer.predict`` return rows in dataset order.

    With ``train_sampling_strategy: group_by_length`` transformers also length-groups (and
    shuffles) *evaluation* batches. Accuracy does not care, but row i of the predictions is then
    not review i, and anything keyed by row (saved probabilities, test_predictions.jsonl) would be
    silently misaligned. One process: a sequential sampler. Several: the default distributed
    sharding, which ``predict`` gathers back in order.
    """
    from torch.utils.data import SequentialSampler

    original = trainer._get_eval_sampler
    trainer._get_eval_sampler = lambda dataset: SequentialSampler(dataset) if trainer.args.world_size <= 1 else None
    try:
        yield
    finally:
        trainer._get_eval_sampler = original


def _ids(dataset, review_ids: dict[str, list[int]] | None, split: str) -> list[int]:
    """Source-split review ids of ``dataset``'s rows (see imdb_llm.imdb.data: the ``id`` column)."""
    if review_ids and split in review_ids:
        ids = list(review_ids[split])
    elif "id" in dataset.column_names:
        ids = dataset["id"]
    else:
        raise ValueError(f"{split}: no 'id' column and no review_ids given; cannot key saved probabilities")
    if len(ids) != len(dataset):
        raise ValueError(f"{split}: {len(ids)} review ids for {len(dataset)} rows")
    return [int(i) for i in ids]
