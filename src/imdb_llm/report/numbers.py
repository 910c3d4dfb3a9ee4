"""Reading numbers out of one result file, and writing them the way the report prints them."""

from __future__ import annotations

import math
import re
from typing import Any

# Metric keys in the order we prefer them. Scripts are written by different people, so the
# report looks for the documented names first and then for anything that clearly means the same.
THROUGHPUT_KEYS = (
    "pretrain_tokens_per_second",
    "train_tokens_per_second",
    "tokens_per_second",
    "decode_tokens_per_second",
    "train_samples_per_second",
    "samples_per_second",
)
MEMORY_KEYS = ("peak_memory_gib", "peak_gib", "train_peak_memory_gib", "peak_memory")
PARAM_KEYS = ("parameters", "num_parameters", "n_parameters", "trainable_parameters")


# --------------------------------------------------------------------------------------------
# Reading numbers out of one result
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return float(value)


def accuracy(result: dict[str, Any]) -> float | None:
    """Test accuracy as a fraction in [0, 1] (the Trainer's ``test_accuracy``)."""
    m = result["metrics"]
    for key in ("test_accuracy", "accuracy", "eval_accuracy"):
        value = _number(m.get(key))
        if value is not None:
            return value
    return None


def parameters(result: dict[str, Any]) -> float | None:
    for source in (result, result["metrics"]):
        for key in PARAM_KEYS:
            value = _number(source.get(key))
            if value is not None:
                return value
    return None


def throughput(result: dict[str, Any]) -> tuple[float, str, str] | None:
    """``(value, unit, key)``: the training (or decoding) speed the run recorded."""
    m = result["metrics"]
    keys = list(THROUGHPUT_KEYS) + sorted(
        k for k in m if k.endswith(("tokens_per_second", "samples_per_second")) and not k.startswith(("test_", "eval_"))
    )
    for key in keys:
        value = _number(m.get(key))
        if value is not None:
            unit = "tok/s" if "token" in key else "samples/s"
            return value, unit, key
    return None


def peak_memory(result: dict[str, Any]) -> float | None:
    m = result["metrics"]
    for key in MEMORY_KEYS:
        value = _number(m.get(key))
        if value is not None:
            return value
    for key in sorted(m):
        if "peak" in key and ("gib" in key or "memory" in key):
            value = _number(m.get(key))
            if value is not None:
                return value
    return None


def headline(result: dict[str, Any]) -> str:
    """The one number a reader looks for first; what it is depends on the kind of run."""
    m = result["metrics"]
    acc = accuracy(result)
    if acc is not None:
        n = _number(m.get("n_test"))
        return f"{fmt_percent(acc)} test accuracy" + (f" (n={int(n):,})" if n is not None else "")
    # Recipe search (scripts/tune_classifier.py): the best variant on validation; test is never read.
    best = _number(m.get("best_validation_accuracy"))
    if best is not None and m.get("best_variant"):
        n = _number(m.get("n_validation"))
        return (f"best of {m.get('n_variants', '?')} variants: {m['best_variant']}, {fmt_percent(best)} validation accuracy"
                + (f" (n={int(n):,})" if n is not None else ""))
    # Padding benchmark alone (finetune_classifier.py --benchmark_only): both speeds and the ratio.
    dyn, pad = _number(m.get("bench_dynamic_grouped_samples_per_second")), _number(m.get("bench_pad_to_max_length_samples_per_second"))
    if dyn is not None and pad is not None and pad > 0:
        length = _number(m.get("bench_max_length"))
        target = f"pad-to-{int(length)}" if length is not None else "pad-to-max"
        return f"dynamic+grouped {dyn:,.2f} vs {target} {pad:,.2f} samples/s (×{dyn / pad:.2f})"
    # Precision benchmark (finetune_classifier.py --benchmark_precision_steps): the same batches in both precisions.
    bf16, fp32 = _number(m.get("bench_bf16_samples_per_second")), _number(m.get("bench_fp32_samples_per_second"))
    if bf16 is not None and fp32 is not None and fp32 > 0:
        native = {True: ", native bf16", False: ", no native bf16"}.get(m.get("native_bf16"), "")
        return f"bf16 autocast {bf16:,.2f} vs fp32 {fp32:,.2f} samples/s (×{bf16 / fp32:.2f}{native})"
    # Serving benchmark (scripts/bench_serve.py): batching gain at 16 clients, failures at the highest load.
    one, sixteen = _number(m.get("clients_1_tokens_per_second")), _number(m.get("clients_16_tokens_per_second"))
    if one is not None and sixteen is not None and one > 0:
        top = max((int(k.split("_")[1]) for k in m if re.fullmatch(r"clients_\d+_tokens_per_second", k)), default=16)
        failed = m.get("failed_requests")
        return (f"16 clients {sixteen:,.1f} vs 1 client {one:,.1f} tok/s (×{sixteen / one:.2f})"
                + (f"; {failed} failed of {m.get('requests')} requests up to {top} clients" if failed is not None else ""))
    # Language-model pretraining alone (scripts/pretrain_lstm_lm.py): perplexity on held-out text.
    ppl = _number(m.get("validation_perplexity"))
    if ppl is not None:
        n = _number(m.get("n_validation_tokens"))
        return f"validation perplexity {ppl:,.1f}" + (f" ({int(n):,} tokens)" if n is not None else "")
    # Generation runs (scripts/sft_qlora.py): base model vs tuned model on the same prompts
    # (results before issue 31 call the tuned model "adapter_").
    parts = []
    for key, label in (("rouge-l", "ROUGE-L"), ("bleu-4", "BLEU-4")):
        base = _number(m.get(f"base_{key}"))
        adapter = _number(m.get(f"tuned_{key}", m.get(f"adapter_{key}")))
        if base is not None and adapter is not None:
            parts.append(f"{label} {base:.2f} → {adapter:.2f}")
        elif adapter is not None:
            parts.append(f"{label} {adapter:.2f}")
    base_loss, loss = _number(m.get("eval_loss_base")), _number(m.get("eval_loss"))
    if parts and base_loss is not None and loss is not None:
        parts.append(f"val loss {base_loss:.3f} → {loss:.3f}")
    if parts:
        base_loops, loops = _number(m.get("base_loop_rate")), _number(m.get("tuned_loop_rate"))
        if loops is not None:
            parts.append(f"loops {base_loops:.0%} → {loops:.0%}" if base_loops is not None else f"loops {loops:.0%}")
        return ", ".join(parts) + (" (base → tuned)" if "→" in parts[0] else "")
    tp = throughput(result)
    if tp is not None:
        return f"{fmt_number(tp[0])} {tp[1]}"
    # Fall back to the first numeric metric, named, rather than invent a summary.
    for key in sorted(m):
        if _number(m[key]) is not None:
            return f"{key} {fmt_number(m[key])}"
    return "(no numeric metric)"


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def fmt_percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def fmt_number(value: Any) -> str:
    v = _number(value)
    if v is None:
        return str(value)
    if v != 0 and (abs(v) >= 1e12 or abs(v) < 1e-3):
        return f"{v:.3g}"
    if v == int(v):
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_count(value: float | None) -> str:
    if value is None:
        return "—"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= div:
            return f"{value / div:.1f}{suffix}" if value / div < 100 else f"{value / div:.0f}{suffix}"
    return str(int(value))


def fmt_seconds(seconds: Any) -> str:
    s = _number(seconds)
    if s is None:
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_throughput(result: dict[str, Any]) -> str:
    tp = throughput(result)
    return "—" if tp is None else f"{fmt_number(tp[0])} {tp[1]}"


def fmt_memory(result: dict[str, Any]) -> str:
    mem = peak_memory(result)
    return "—" if mem is None else f"{mem:.2f} GiB"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
