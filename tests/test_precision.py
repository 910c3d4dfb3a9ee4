"""--mixed_precision auto: bf16 only where the hardware has it natively, told apart by CPU flags."""

import pytest
import torch

from imdb_llm import precision, results
from imdb_llm.cli import UserError

EPYC_FLAGS = "fpu vme de pse avx2 avx512f avx512bw avx512_bf16 avx512vl"
OLDER_FLAGS = "fpu vme de pse avx2 avx512f avx512bw avx512vl"


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return str(path)


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _pretend(monkeypatch, tmp_path, flags):
    info = _cpuinfo(tmp_path, flags)
    real_flags, real_name = precision.cpu_flags, precision.cpu_model_name
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=info: real_flags(cpuinfo))
    monkeypatch.setattr(precision, "cpu_model_name", lambda cpuinfo=info: real_name(cpuinfo))


def test_flags_and_name_are_read_from_cpuinfo(tmp_path):
    info = _cpuinfo(tmp_path, EPYC_FLAGS)
    assert "avx512_bf16" in precision.cpu_flags(info) and precision.cpu_model_name(info) == "AMD EPYC 9R14"
    assert precision.cpu_flags(str(tmp_path / "missing")) == set() and precision.cpu_model_name(str(tmp_path / "missing")) is None


def test_auto_is_bf16_autocast_on_a_cpu_with_native_bf16(cpu_only, monkeypatch, tmp_path):
    _pretend(monkeypatch, tmp_path, EPYC_FLAGS)
    assert precision.precision_flags("auto") == {"bf16": True, "fp16": False, "use_cpu": True}
    assert precision.precision_label("auto") == "bf16 autocast (native bf16)"
    assert "native bf16" in results.device_description() and "AMD EPYC 9R14" in results.device_description()


def test_auto_keeps_fp32_where_bf16_would_be_emulated(cpu_only, monkeypatch, tmp_path):
    _pretend(monkeypatch, tmp_path, OLDER_FLAGS)
    assert precision.precision_flags("auto") == {"bf16": False, "fp16": False}
    assert precision.precision_label("auto") == "fp32"
    assert precision.precision_flags("bf16")["bf16"] is True  # asked for explicitly: given, if slower
    assert ", no native bf16" in results.device_description()


def test_amx_counts_as_native_bf16(cpu_only, monkeypatch, tmp_path):
    _pretend(monkeypatch, tmp_path, OLDER_FLAGS + " amx_bf16 amx_tile")
    assert precision.resolve_precision("auto") == "bf16"


def test_bad_choices_are_one_line_errors(cpu_only):
    with pytest.raises(UserError, match="must be one of auto, bf16, fp16, no"):
        precision.resolve_precision("fp8")
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        precision.resolve_precision("fp16")


def test_auto_on_a_gpu_is_bf16_or_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.precision_flags("auto") == {"bf16": True, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.precision_flags("auto") == {"bf16": False, "fp16": True}
