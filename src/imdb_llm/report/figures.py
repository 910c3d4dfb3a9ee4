"""The report's figures in ``docs/figures/`` (accuracy, training time, throughput, peak memory,
learning curves, pretraining loss), drawn only from what result files hold."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from imdb_llm.report.numbers import _number, accuracy, fmt_number, peak_memory, throughput
from imdb_llm.report.table import EXPECTED_BY_NAME, ordered_names

FAMILY_COLORS = {"bert": "#1f77b4", "gpt": "#d62728", "rnn/cnn": "#7f7f7f", "llm": "#2ca02c", "other": "#9467bd"}

# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

FIGURES = ("accuracy", "train_time", "throughput", "peak_memory", "learning_curves", "pretrain_loss")


def _label(name: str) -> str:
    return name.replace("imdb-", "").replace("finetune-", "ft-")


def _family(name: str) -> str:
    exp = EXPECTED_BY_NAME.get(name)
    return exp.family if exp else "other"


def _bar_figure(path: Path, items: list[tuple[str, float | None]], xlabel: str, title: str, value_fmt: Callable[[float], str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(items) + 1.4))
    ys = list(range(len(items)))[::-1]
    measured = [v for _, v in items if v is not None]
    top = max(measured) if measured else 1.0
    for y, (name, value) in zip(ys, items):
        if value is None:
            ax.text(0, y, "  not yet measured", va="center", ha="left", color="#888888", style="italic")
            continue
        ax.barh(y, value, color=FAMILY_COLORS.get(_family(name), FAMILY_COLORS["other"]))
        ax.text(value + 0.01 * top, y, value_fmt(value), va="center", ha="left", fontsize=8)
    ax.set_yticks(ys, [_label(n) for n, _ in items])
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _learning_curves(path: Path, curves: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in curves.items():
        color = None
        train = [(h["step"], h["loss"]) for h in history if _number(h.get("loss")) is not None and "step" in h]
        if train:
            (line,) = ax_loss.plot(*zip(*train), label=f"{_label(name)} train", alpha=0.8)
            color = line.get_color()
        evals = [(h["step"], h["eval_loss"]) for h in history if _number(h.get("eval_loss")) is not None and "step" in h]
        if evals:
            ax_loss.plot(*zip(*evals), "o--", color=color, label=f"{_label(name)} val", markersize=3)
        accs = [(h["step"], 100 * h["eval_accuracy"]) for h in history if _number(h.get("eval_accuracy")) is not None and "step" in h]
        if accs:
            ax_acc.plot(*zip(*accs), "o-", color=color, label=_label(name), markersize=3)
    ax_loss.set(xlabel="step", ylabel="loss", title="Loss (training and validation)")
    ax_acc.set(xlabel="step", ylabel="validation accuracy (%)", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def figure_data(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per figure, what would be drawn; an empty entry means 'no result holds this yet'."""
    classif = [n for n in ordered_names(results) if (n in results and accuracy(results[n]) is not None) or
               (n not in results and n in EXPECTED_BY_NAME and n.startswith("imdb-"))]
    data: dict[str, Any] = {
        "accuracy": [(n, accuracy(results[n]) * 100 if n in results else None) for n in classif],
        "train_time": [(n, _number(results[n].get("train_seconds"))) for n in ordered_names(results) if n in results and _number(results[n].get("train_seconds")) is not None],
        "throughput": {},
        "peak_memory": [(n, peak_memory(results[n])) for n in ordered_names(results) if n in results and peak_memory(results[n]) is not None],
        "learning_curves": {n: results[n]["log_history"] for n in ordered_names(results)
                            if n in results and isinstance(results[n].get("log_history"), list) and results[n]["log_history"]},
        # Self-supervised stages that record their loss curve ([step, loss] pairs), one line per run.
        "pretrain_loss": {n: results[n]["metrics"]["pretrain_loss_curve"] for n in ordered_names(results)
                          if n in results and results[n]["metrics"].get("pretrain_loss_curve")},
    }
    for n in ordered_names(results):
        if n in results and throughput(results[n]) is not None:
            value, unit, _ = throughput(results[n])
            data["throughput"].setdefault(unit, []).append((n, value))
    if not any(v is not None for _, v in data["accuracy"]):
        data["accuracy"] = []
    return data


def write_figures(results: dict[str, dict[str, Any]], figures_dir: Path) -> dict[str, Path]:
    """Draw every figure that has data into ``figures_dir``; remove stale ones that no longer do."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    data = figure_data(results)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=figures_dir, prefix=".tmp-") as tmp:
        tmp = Path(tmp)
        if data["accuracy"]:
            _bar_figure(tmp / "accuracy.png", data["accuracy"], "test accuracy (%)", "IMDB test accuracy per model", lambda v: f"{v:.2f} %")
        if data["train_time"]:
            _bar_figure(tmp / "train_time.png", [(n, v / 60) for n, v in data["train_time"]], "training time (minutes)",
                        "Training time (see each result's device)", lambda v: f"{v:.1f} min")
        if data["throughput"]:
            parts = [(unit, items) for unit, items in sorted(data["throughput"].items())]
            # One figure, one panel per unit: tokens/s and samples/s are not comparable.
            _throughput_figure(tmp / "throughput.png", parts)
        if data["peak_memory"]:
            _bar_figure(tmp / "peak_memory.png", data["peak_memory"], "peak accelerator memory (GiB)", "Peak memory", lambda v: f"{v:.2f} GiB")
        if data["learning_curves"]:
            _learning_curves(tmp / "learning_curves.png", data["learning_curves"])
        if data["pretrain_loss"]:
            _pretrain_loss_figure(tmp / "pretrain_loss.png", data["pretrain_loss"], results)
        for key in FIGURES:
            target = figures_dir / f"{key}.png"
            if (tmp / f"{key}.png").exists():
                os.replace(tmp / f"{key}.png", target)
                written[key] = target
            elif target.exists():
                target.unlink()  # a figure for data that no longer exists would be a stale claim
    return written


def _pretrain_loss_figure(path: Path, curves: dict[str, list], results: dict[str, dict[str, Any]]) -> None:
    """Pretraining loss against tokens seen: MLM and causal-LM losses are different quantities
    (15 % masked tokens vs every next token), so each objective gets its own panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_objective: dict[str, list[str]] = {}
    for name in curves:
        by_objective.setdefault(results[name]["metrics"].get("pretrain_objective", "lm"), []).append(name)
    fig, axes = plt.subplots(1, len(by_objective), figsize=(5.5 * len(by_objective), 3.8), squeeze=False)
    for ax, (objective, names) in zip(axes[0], sorted(by_objective.items())):
        # Runs of one objective share a family colour, so a line style tells them apart.
        for name, style in zip(names, itertools.cycle(("-", "--", ":", "-."))):
            m, curve = results[name]["metrics"], curves[name]
            per_step = (_number(m.get("pretrain_tokens")) or 0) / max(1, _number(m.get("pretrain_steps")) or 1)
            ax.plot([step * per_step / 1e6 for step, _ in curve], [loss for _, loss in curve], style,
                    color=FAMILY_COLORS.get(_family(name)), label=_label(name))
        ax.set(xlabel="pretraining tokens seen (millions)", ylabel="training loss", title={"mlm": "Masked LM", "clm": "Causal LM"}.get(objective, objective))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _throughput_figure(path: Path, parts: list[tuple[str, list[tuple[str, float]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(len(items) for _, items in parts)
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 0.45 * n_rows + 1.6), squeeze=False)
    for ax, (unit, items) in zip(axes[0], parts):
        ys = list(range(len(items)))[::-1]
        top = max(v for _, v in items) or 1.0
        for y, (name, value) in zip(ys, items):
            ax.barh(y, value, color=FAMILY_COLORS.get(_family(name), FAMILY_COLORS["other"]))
            ax.text(value + 0.01 * top, y, fmt_number(value), va="center", fontsize=8)
        ax.set_yticks(ys, [_label(n) for n, _ in items])
        ax.set_xlim(0, top * 1.3)
        ax.set_xlabel(unit)
        ax.set_title(f"Throughput ({unit})")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
