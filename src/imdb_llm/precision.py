"""Which floating-point precision a run computes in: ``--mixed_precision auto|bf16|fp16|no``.

``auto`` picks bf16 where the hardware does bf16 natively and full precision elsewhere:
- a GPU: bf16 on Ampere and newer (H100/H200), fp16 on older ones;
- a CPU: bf16 autocast only with native bf16 instructions (AVX512-BF16 or AMX-BF16). There it
  measured 1.7x fp32 for MiniLM training and inference and 2.3x for LoRA on SmolLM2 (2-core AMD
  EPYC, torch 2.13). Without them bf16 is emulated and slower than fp32, so ``auto`` keeps fp32.
The capability is read from the CPU's feature flags, not guessed from its vendor or model name.
"""

from __future__ import annotations

from imdb_llm.cli import UserError

CHOICES = ("auto", "bf16", "fp16", "no")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _first_cpuinfo_value(key: str, cpuinfo: str) -> str | None:
    """The value of the first ``key : value`` line of cpuinfo (None where there is no such file or line)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags the kernel reports for the first CPU (empty where there is no cpuinfo)."""
    return set((_first_cpuinfo_value("flags", cpuinfo) or "").split())


def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's marketing name as the kernel reports it, e.g. 'AMD EPYC' (None where unknown)."""
    return " ".join((_first_cpuinfo_value("model name", cpuinfo) or "").split()) or None


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def resolve_precision(choice: str) -> str:
    """``auto`` -> bf16 / fp16 / no for this machine; an explicit choice is checked and kept."""
    import torch

    if choice not in CHOICES:
        raise UserError(f"--mixed_precision must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice != "auto":
        if choice == "fp16" and not torch.cuda.is_available():
            raise UserError("--mixed_precision fp16 needs a GPU; on a CPU use bf16 or no")
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"


def precision_flags(choice: str) -> dict[str, bool]:
    """TrainingArguments fields for ``choice``. Trainer autocasts to bf16 on a CPU too, but only
    when told it runs on the CPU (``use_cpu``); without it, it refuses bf16 with no GPU."""
    import torch

    resolved = resolve_precision(choice)
    flags = {"bf16": resolved == "bf16", "fp16": resolved == "fp16"}
    if resolved == "bf16" and not torch.cuda.is_available():
        flags["use_cpu"] = True
    return flags


def precision_label(choice: str) -> str:
    """What a result's ``device`` field should say about precision, e.g. 'bf16 autocast (native)'."""
    import torch

    resolved = resolve_precision(choice)
    if resolved == "no":
        return "fp32"
    if resolved == "bf16" and not torch.cuda.is_available():
        return "bf16 autocast (native bf16)" if cpu_has_native_bf16() else "bf16 autocast (emulated: no native bf16)"
    return f"{resolved} autocast"
