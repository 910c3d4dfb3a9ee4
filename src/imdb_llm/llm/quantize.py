"""Weight-only 4-bit linear layers for decoding on a CPU: fewer bytes read per token.

Why this exists (issue 34). Decoding one token multiplies a single row of activations by every
weight matrix of the model, so on a CPU its cost is reading the weights, not arithmetic (a profile
of a bf16 decode step of SmolLM2-135M is mostly ``aten::mm``). llama.cpp keeps the weights in the
4-bit blocks of the GGUF file, and issue 34 found it several times faster for one user than this
project's server running the same file dequantized to bf16. torch ships the matching CPU kernel: ``_weight_int4pack_mm_for_cpu`` multiplies
bf16 activations by 4-bit weights in groups along the input, each group with a scale and an offset,
``w = (code - 8) * scale + zero``.

That is GGUF's Q4_1 layout (groups of 32, ``w = code * d + m``, so ``scale = d`` and
``zero = m + 8 d``), and Q4_1 sets ``m`` to the group's minimum and ``d`` to its range / 15, so every
group holds both code 0 and code 15. Re-grouping the dequantized weights recovers the file's codes
exactly; what is lost is only the rounding of ``d`` and ``m`` from fp16 to bf16 (the kernel's scale
type). :func:`quantize_for_decode` measures that, so a log says "lossless" only when it is. Other
sources (a bf16 checkpoint, a Q8_0 file) are rounded to 4 bits here: lossy, as llama.cpp's own
quantisation is.

The output layer stays in bf16. It is tied to the token embeddings, which GGUF files keep at higher
precision (Q8_0 in SmolLM2's) and which the model keeps in bf16 for the lookup anyway, so it costs no
extra memory; and the logits are where rounding shows first (an int8 output layer with one scale per
row, tried on SmolLM2-135M, changed greedy answers far sooner than bf16 did, so it is not offered).
``scripts/bench_cpu_decode.py`` measures what int4 costs and buys against fp32 and bf16
(results/decode-weights-smollm2-cpu.json): speed for one request and for sixteen, and how long the
greedy answers stay token for token the same as fp32's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imdb_llm.cli import UserError

GROUP = 32  # GGUF's block size; the torch kernel also takes 64, 128 and 256
LOSSLESS_CODE_ERROR = 0.02  # in units of a group's step: bf16 scales move a code by ~2**-8 * 15


@dataclass
class QuantizeReport:
    """What :func:`quantize_for_decode` did, for the log and the result file."""

    int4_layers: int
    bytes_before: int
    bytes_after: int
    max_code_error: float  # how far the original weights sat from the 4-bit grid, in steps (0 = on the grid)

    @property
    def lossless(self) -> bool:
        return self.max_code_error <= LOSSLESS_CODE_ERROR

    def describe(self) -> str:
        kind = ("lossless: the weights were already on a 4-bit grid (a Q4_1 file)" if self.lossless
                else f"lossy: weights rounded to 4 bits, up to {self.max_code_error:.2f} of a step")
        return (f"int4 weights ({self.int4_layers} layers, groups of {GROUP}), bf16 output layer: "
                f"{self.bytes_before / 2**20:,.0f} MiB as loaded -> {self.bytes_after / 2**20:,.0f} MiB; {kind}")


def int4_groups(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Asymmetric 4-bit codes along the input dimension: ``(codes [n, k] int32 in 0..15, step [n, k/g],
    minimum [n, k/g], largest distance of a weight from its code in steps)``."""
    n, k = weight.shape
    groups = weight.detach().float().reshape(n, k // group, group)
    low, high = groups.amin(-1), groups.amax(-1)
    step = (high - low) / 15
    safe = torch.where(step > 0, step, torch.ones_like(step))  # a constant group: every code 0
    exact = (groups - low[..., None]) / safe[..., None]
    codes = exact.round().clamp_(0, 15)
    return codes.to(torch.int32).reshape(n, k), step, low, float((exact - codes).abs().max())


class Int4Linear(nn.Module):
    """``nn.Linear`` with 4-bit weights in groups of :data:`GROUP` (CPU kernel, bf16 activations)."""

    def __init__(self, linear: nn.Linear, group: int = GROUP):
        super().__init__()
        self.in_features, self.out_features, self.group = linear.in_features, linear.out_features, group
        codes, step, low, self.code_error = int4_groups(linear.weight, group)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1))
        zero = low + 8 * step  # the kernel centres codes on 8
        self.register_buffer("scales_and_zeros", torch.stack([step, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def _tensor_bytes(module: nn.Module) -> int:
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def quantize_for_decode(model: nn.Module, group: int = GROUP) -> QuantizeReport:
    """Swap the model's linear layers except the output layer for :class:`Int4Linear`, in place, then
    cast what is left (norms, embeddings, output layer) to bf16. CPU only."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise UserError("--quantize int4 is a CPU kernel; on a GPU load with --load_in_4bit (bitsandbytes) instead")
    if hasattr(model, "peft_config"):
        raise UserError("--quantize int4 cannot carry a LoRA adapter: merge it first (scripts/merge_adapter.py) or drop --quantize")
    before = _tensor_bytes(model)
    output = model.get_output_embeddings()
    int4 = 0
    worst = 0.0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child is not output and child.in_features % group == 0:
                layer = Int4Linear(child, group)
                worst = max(worst, layer.code_error)
                setattr(parent, name, layer)
                int4 += 1
    if int4 == 0:
        raise UserError(f"--quantize int4: no linear layer whose input size is a multiple of {group}")
    model.to(torch.bfloat16)  # floating tensors only: the packed codes stay uint8
    return QuantizeReport(int4, before, _tensor_bytes(model), worst)

