"""scripts/bench_decode.py on a tiny Glm shape on CPU: every decode mode runs, agrees, is recorded.

The compile modes use the ``eager`` backend here (Dynamo traces the model, no C++ codegen) so the
test takes seconds; the H200 run (gpu/decode.sh) uses inductor + CUDA graphs.
"""

import importlib
import json

import pytest


@pytest.fixture(scope="module")
def bench(repo_root):
    return importlib.import_module("bench_decode")  # scripts/ is on pytest's pythonpath


def test_all_modes_agree_and_write_a_result(bench, tmp_path):
    argv = [
        "--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--prompt_tokens", "5", "--new_tokens", "6",
        "--repeats", "1", "--warmup", "1", "--compile_backend", "eager", "--results_name", "decode-tiny", "--results_dir", str(tmp_path),
    ]
    bench.main(argv)
    data = json.loads((tmp_path / "decode-tiny.json").read_text())
    assert set(data["per_mode"]) == set(bench.MODES) and data["failed_modes"] == {}
    assert all(m["tokens"] == 6 and m["tokens_per_s"] > 0 for m in data["per_mode"].values())
    assert data["metrics"]["tokens_per_s"] == max(m["tokens_per_s"] for m in data["per_mode"].values())
    # Same weights, greedy, float32: the fast paths must produce exactly the textbook tokens.
    assert data["token_agreement"] == {mode: 1.0 for mode in bench.MODES}
    assert (tmp_path / "decode-tiny.log").read_text().count("tokens/s") >= len(bench.MODES)


def test_bad_flags_exit_2(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--preset", "tiny", "--modes", "warp_drive", "--results_dir", str(tmp_path)])
    assert exit_.value.code == 2 and "warp_drive" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
