"""Training speed measured the fair way: two settings, the same model initialisation, the same
batches in the same order, timed after a few warm-up steps in one process.

Used by every IMDB track (fine-tuning, TextCNN/BiLSTM, BERT/GPT from scratch) to decide on
evidence whether bf16 autocast pays on the machine at hand: on a CPU it depends on native bf16
instructions (AVX512-BF16 / AMX), and on how much of a model's time goes to matrix products.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


def timed_steps(trainer, warmup_steps: int) -> float:
    """Run ``trainer.train()`` and return the seconds spent after the first ``warmup_steps`` steps."""
    from transformers import TrainerCallback

    marks: dict[str, float] = {}

    class _Clock(TrainerCallback):
        def _sync(self):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup_steps:
                self._sync()
                marks["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self._sync()
            marks["end"] = time.perf_counter()

    trainer.add_callback(_Clock())
    if warmup_steps == 0:
        marks["start"] = time.perf_counter()
    trainer.train()
    return marks["end"] - marks["start"]


def global_batch(args) -> int:
    return args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps


def samples_per_second(label: str, make_model: Callable, train_dataset, training_args, collator, *, steps: int, warmup_steps: int, **overrides) -> float:
    """Training samples/s of a fresh model over ``steps`` timed steps, nothing evaluated or saved.

    The sampler is seeded by ``training_args.seed``, so two calls with the same data and sampling
    strategy see the same batches in the same order.
    """
    import dataclasses
    import tempfile

    from transformers import Trainer

    batch = global_batch(training_args)
    with tempfile.TemporaryDirectory() as tmp:
        args = dataclasses.replace(
            training_args, output_dir=tmp, max_steps=warmup_steps + steps, num_train_epochs=1, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, logging_strategy="no", report_to="none", warmup_steps=0, **overrides,
        )
        trainer = Trainer(model=make_model(), args=args, train_dataset=train_dataset, data_collator=collator)
        seconds = timed_steps(trainer, warmup_steps)
    print(f"{label}: {steps} steps x {batch} samples in {seconds:.2f} s")
    return round(steps * batch / seconds, 2)


def benchmark_precision(make_model: Callable, train_dataset, training_args, collator, *, steps: int, warmup_steps: int = 5,
                        sampling: str = "group_by_length") -> dict[str, Any]:
    """Training samples/s in fp32 vs bf16 autocast and their ratio, with ``native_bf16`` saying
    what the machine had. ``make_model()`` must return a fresh model with the same weights each call."""
    import torch

    from imdb_llm.precision import cpu_has_native_bf16

    on_cpu = not torch.cuda.is_available()
    out: dict[str, Any] = {}
    for name, flags in (("fp32", {"bf16": False, "fp16": False}), ("bf16", {"bf16": True, "fp16": False, "use_cpu": on_cpu})):
        out[f"bench_{name}_samples_per_second"] = samples_per_second(
            f"precision benchmark: {name}", make_model, train_dataset, training_args, collator, steps=steps, warmup_steps=warmup_steps,
            train_sampling_strategy=sampling, **flags)
    out["bench_speedup_bf16_vs_fp32"] = round(out["bench_bf16_samples_per_second"] / out["bench_fp32_samples_per_second"], 3)
    out["native_bf16"] = cpu_has_native_bf16() if on_cpu else bool(torch.cuda.is_bf16_supported())
    out["bench_precision_steps"] = steps
    out["bench_batch_size"] = global_batch(training_args)
    return out


@dataclass
class PrecisionBenchmarkArguments:
    """The bf16-vs-fp32 speed figure, shared by the IMDB training scripts."""

    benchmark_precision_steps: int = field(default=0, metadata={"help": "Before training, time this many steps in fp32 vs bf16 autocast (same batches); figures go into the result file."})
    benchmark_warmup_steps: int = field(default=5, metadata={"help": "Untimed steps before each benchmark run."})
    benchmark_only: bool = field(default=False, metadata={"help": "Write each benchmark that ran as its own result (<results_name>-<kind>-bench) and stop: no training, no test evaluation."})

    def check(self, other_benchmarks: dict[str, int] | None = None) -> None:
        """``other_benchmarks``: a script's own benchmark flags and their step counts."""
        from imdb_llm.cli import UserError

        steps = {**(other_benchmarks or {}), "--benchmark_precision_steps": self.benchmark_precision_steps}
        if min(*steps.values(), self.benchmark_warmup_steps) < 0:
            raise UserError("step counts must not be negative")
        if self.benchmark_only and max(steps.values()) <= 0:
            raise UserError(f"--benchmark_only needs {' or '.join(steps)} > 0")


def write_benchmark_results(benchmarks: dict[str, dict[str, Any]], *, results_name: str | None, result_args, config: dict, log, fields: dict[str, Any],
                            parameters: int) -> None:
    """Each speed figure as its own result, ``<results_name>-<kind>-bench``: it holds no accuracy, so
    the results table cannot mistake it for one, and it never stands in for the accuracy run's file."""
    from imdb_llm.results import write_result

    for kind, figures in benchmarks.items():
        written = write_result(f"{results_name or 'run'}-{kind}-bench", {**fields, **figures}, headline=f"{kind}_benchmark", config=config, log_text=log.getvalue(),
                               results_dir=result_args.results_dir, extra={"parameters": parameters})
        print(f"{kind} benchmark written to {written}")
