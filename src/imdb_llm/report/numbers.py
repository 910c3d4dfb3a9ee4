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


def _accuracy_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    acc, n = accuracy(result), _number(m.get("n_test"))
    return f"{fmt_percent(acc)} test accuracy" + (f" (n={int(n):,})" if n is not None else "")


def _search_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Recipe search (scripts/tune_recipe.py): the best variant on validation; test is never read.
    n = _number(m.get("n_validation"))
    metric = m.get("metric", "best_validation_accuracy")
    value = (f"{fmt_percent(m[metric])} validation accuracy" if metric == "best_validation_accuracy"
             else f"validation {metric.replace('_', ' ')} {fmt_number(m[metric])}")
    return f"best of {m.get('n_variants', '?')} variants: {m['best_variant']}, {value}" + (f" (n={int(n):,})" if n is not None else "")


def _padding_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Padding benchmark (finetune_classifier.py --benchmark_only): both speeds and the ratio.
    dyn, pad = m["bench_dynamic_grouped_samples_per_second"], m["bench_pad_to_max_length_samples_per_second"]
    length = _number(m.get("bench_max_length"))
    target = f"pad-to-{int(length)}" if length is not None else "pad-to-max"
    return f"dynamic+grouped {dyn:,.2f} vs {target} {pad:,.2f} samples/s (×{dyn / pad:.2f})"


def _precision_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Precision benchmark (--benchmark_precision_steps): the same batches in both precisions.
    bf16, fp32 = m["bench_bf16_samples_per_second"], m["bench_fp32_samples_per_second"]
    native = {True: ", native bf16", False: ", no native bf16"}.get(m.get("native_bf16"), "")
    return f"bf16 autocast {bf16:,.2f} vs fp32 {fp32:,.2f} samples/s (×{bf16 / fp32:.2f}{native})"


def _serving_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Serving benchmark (scripts/bench_serve.py): batching gain at 16 clients, the llama.cpp peer, failures.
    one, sixteen = m["clients_1_tokens_per_second"], m.get("clients_16_tokens_per_second")
    top = max((int(k.split("_")[1]) for k in m if re.fullmatch(r"clients_\d+_tokens_per_second", k)), default=1)
    text = f"1 client {one:,.1f} tok/s" + (f", 16 clients {sixteen:,.1f} (×{sixteen / one:.2f})" if sixteen else "")
    peer = _number(m.get("peer_clients_1_tokens_per_second"))
    if peer:
        text += f"; llama.cpp 1 client {peer:,.1f} (ours ×{one / peer:.2f})"
    failed = m.get("failed_requests")
    return text + (f"; {failed} failed of {m.get('requests')} requests up to {top} clients" if failed is not None else "")


def _perplexity_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Language-model pretraining alone (scripts/pretrain_lstm_lm.py): perplexity on held-out text.
    n = _number(m.get("n_validation_tokens"))
    return f"validation perplexity {m['validation_perplexity']:,.1f}" + (f" ({int(n):,} tokens)" if n is not None else "")


def _generation_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # Generation runs (scripts/sft_qlora.py, eval_chat.py): base model vs tuned model on the same prompts
    # (results before issue 31 call the tuned model "adapter_").
    parts = []
    for key, label in (("rouge-l", "ROUGE-L"), ("bleu-4", "BLEU-4")):
        base = _number(m.get(f"base_{key}"))
        tuned = _number(m.get(f"tuned_{key}", m.get(f"adapter_{key}")))
        if base is not None and tuned is not None:
            parts.append(f"{label} {base:.2f} → {tuned:.2f}")
        elif tuned is not None:
            parts.append(f"{label} {tuned:.2f}")
    base_loss, loss = _number(m.get("eval_loss_base")), _number(m.get("eval_loss"))
    if base_loss is not None and loss is not None:
        parts.append(f"val loss {base_loss:.3f} → {loss:.3f}")
    elif loss is not None:
        parts.append(f"val loss {loss:.3f}")
    base_loops, loops = _number(m.get("base_loop_rate")), _number(m.get("tuned_loop_rate"))
    if loops is not None:
        parts.append(f"loops {base_loops:.0%} → {loops:.0%}" if base_loops is not None else f"loops {loops:.0%}")
    if not parts:
        raise ValueError("a generation result needs tuned_/base_ rouge-l, bleu-4, loop_rate or eval_loss")
    return ", ".join(parts) + (" (base → tuned)" if "→" in parts[0] else "")


def _throughput_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    tp = throughput(result)
    if tp is None:
        raise ValueError("a throughput result needs a tokens_per_second or samples_per_second metric")
    return f"{fmt_number(tp[0])} {tp[1]}"


def _decode_weights_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/bench_cpu_decode.py: the int4 decoding weights against bf16, and their fidelity to fp32.
    int4, bf16 = m["int4_1_row_tokens_per_second"], m["bf16_1_row_tokens_per_second"]
    return (f"one request: int4 {int4:,.1f} vs bf16 {bf16:,.1f} tok/s (×{int4 / bf16:.2f}); greedy tokens as fp32's: "
            f"int4 {m['int4_same_tokens_as_fp32']:.0%}, bf16 {m['bf16_same_tokens_as_fp32']:.0%}")


def _data_split_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/movie_overlap.py: how much of validation shares a movie with the training reviews.
    n, k = m["n_validation"], m["n_validation_with_sibling"]
    return f"{k:,} of {n:,} validation reviews ({k / n:.0%}) have a review of the same movie in train"


def _medical_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/med_eval.py: correctness and safety of a medical assistant, no judge model.
    base, tuned = _number(m.get("base_answer_match")), _number(m.get("tuned_answer_match"))
    parts = [f"answer match {base:.0%} → {tuned:.0%}" if base is not None else f"answer match {tuned:.0%}"] if tuned is not None else []
    if _number(m.get("tuned_safety_pass")) is not None:
        parts.append(f"safety {m['tuned_safety_pass']:.0%}" + (f" (hold-out {m['tuned_holdout_pass']:.0%})" if "tuned_holdout_pass" in m else ""))
    if _number(m.get("tuned_invented_entity_rate")) is not None:
        parts.append(f"invented names {m['tuned_invented_entity_rate']:.1%} (references {m.get('reference_invented_entity_rate', 0):.1%})")
    if _number(m.get("tuned_rouge-l")) is not None:
        parts.append(f"ROUGE-L {m['tuned_rouge-l']:.2f}, loops {m.get('tuned_loop_rate', 0):.0%}")
    if not parts:
        raise ValueError("a medical result needs tuned_answer_match, tuned_safety_pass, tuned_invented_entity_rate or tuned_rouge-l")
    return ", ".join(parts)


def _leak_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/teacher_leak.py: a student of a teacher that saw validation, against one whose teacher did not.
    low, high = m["student_validation_difference_ci95_points"]
    return (f"student's validation {m['student_validation_difference_points']:+.2f} points (95 % [{low:+.2f}, {high:+.2f}]) "
            f"when its teacher saw validation; test {m['student_test_difference_points']:+.2f}")


def _tokenization_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/tokenizer_stats.py: tokens per character (Chinese) or per review (IMDB), one entry per tokenizer.
    per_char = {k[: -len("_tokens_per_character")]: v for k, v in m.items() if k.endswith("_tokens_per_character")}
    if per_char:
        return "tokens per character: " + ", ".join(f"{label} {v:.2f}" for label, v in per_char.items())
    budget = m["token_budget"]
    per_review = {k[: -len("_mean_tokens")]: v for k, v in m.items() if k.endswith("_mean_tokens")}
    if not per_review:
        raise KeyError("no <label>_tokens_per_character or <label>_mean_tokens")
    return "tokens per review: " + ", ".join(f"{label} {v:.0f} ({m[f'{label}_over_{budget}_share']:.0%} over {budget})" for label, v in per_review.items())


def _faults_headline(m: dict[str, Any], result: dict[str, Any]) -> str:
    # scripts/bench_serve_faults.py: bad requests refused cleanly, clients that left, one long prompt among streams.
    return (f"{m['bad_requests_tried']} bad requests: {m['server_errors_5xx']} server errors, {m['non_openai_error_bodies']} non-OpenAI bodies; "
            f"orphaned job stopped after {m['orphan_running_seconds']:.1f} s; longest stream gap during a "
            f"{m['long_prompt_tokens']:,}-token prefill {m['max_stream_gap_during_long_prefill_s']:.2f} s")


HEADLINE_FORMATS = {
    "test_accuracy": _accuracy_headline,
    "validation_search": _search_headline,
    "padding_benchmark": _padding_headline,
    "precision_benchmark": _precision_headline,
    "serving": _serving_headline,
    "perplexity": _perplexity_headline,
    "generation": _generation_headline,
    "throughput": _throughput_headline,
    "decode_weights": _decode_weights_headline,
    "data_split": _data_split_headline,
    "leak_check": _leak_headline,
    "medical": _medical_headline,
    "tokenization": _tokenization_headline,
    "faults": _faults_headline,
}


def headline(result: dict[str, Any]) -> str:
    """The one figure a reader looks for first: the kind the result file names (``headline``,
    written by the script that ran; imdb_llm.results.HEADLINES), printed the way that kind reads."""
    kind = result.get("headline")
    if kind not in HEADLINE_FORMATS:
        raise ValueError(f"{result.get('name', 'result')}: headline {kind!r} is not one of {', '.join(HEADLINE_FORMATS)}")
    try:
        return HEADLINE_FORMATS[kind](result["metrics"], result)
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise ValueError(f"{result.get('name', 'result')}: its {kind} headline cannot be read from its metrics ({exc!r})") from None


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
