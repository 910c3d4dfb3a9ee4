"""`make report` on fixture result files: table rows, missing results, figures, marker handling."""

import json
import re
import shutil
import subprocess

import pytest

from conftest import FIXTURES, PYTHON, REPO
from imdb_llm.cli import UserError
from imdb_llm.report.pages import make_report, render_template
from imdb_llm.report.table import EXPECTED, MISSING, TABLE_END, TABLE_START

FIXTURE_RESULTS = FIXTURES / "results"
TEMPLATE = REPO / "docs" / "templates" / "bert-vs-gpt.md.in"
README_HEAD = "# Project\n\nIntro paragraph that must survive.\n\n## Results\n\n"
README_TAIL = "\n\n## After the table\n\nMore text, `{{acc:imdb-bert}}` left alone.\n"


@pytest.fixture
def workspace(tmp_path):
    """A README with markers, a results folder copied from the fixtures, and an empty docs folder."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE_RESULTS, results)
    readme = tmp_path / "README.md"
    readme.write_text(README_HEAD + f"{TABLE_START}\nold table\n{TABLE_END}" + README_TAIL, encoding="utf-8")
    docs = tmp_path / "docs"
    (docs / "templates").mkdir(parents=True)
    shutil.copy(TEMPLATE, docs / "templates" / "bert-vs-gpt.md.in")
    return tmp_path


def run_cli(ws, *extra):
    return subprocess.run(
        [PYTHON, str(REPO / "scripts" / "make_report.py"), "--results_dir", str(ws / "results"),
         "--readme", str(ws / "README.md"), "--docs_dir", str(ws / "docs"), *extra],
        capture_output=True, text=True, timeout=120,
    )


def table_rows(text):
    block = text[text.index(TABLE_START): text.index(TABLE_END)]
    return {m.group(1): line for line in block.splitlines() if (m := re.match(r"\| \[?`([^`]+)`", line))}


def test_full_report_from_fixture_results(workspace):
    proc = run_cli(workspace)
    assert proc.returncode == 0, proc.stderr
    readme = (workspace / "README.md").read_text(encoding="utf-8")

    # Nothing outside the markers changed, and the old table is gone.
    assert readme.startswith(README_HEAD + TABLE_START + "\n")
    assert readme.endswith(TABLE_END + README_TAIL)
    assert "old table" not in readme

    rows = table_rows(readme)
    # Every expected result has a row, in order, plus the unknown extra name at the end.
    assert list(rows) == [e.name for e in EXPECTED] + ["zz-extra-experiment"]
    bert = rows["imdb-scratch-bert"]
    assert "(results/imdb-scratch-bert.json)" in bert
    assert "62.50 % test accuracy (n=200)" in bert
    assert "4.4M" in bert and "5.0 min" in bert and "123,456 tok/s" in bert and "1.50 GiB" in bert and "fixture" in bert
    assert "58.75 %" in rows["imdb-scratch-gpt"]
    speed = rows["qlora-chatglm2-6b-speed"]
    assert "4,321 tok/s" in speed and "9.50 GiB" in speed
    assert "| 42 samples/s |" in rows["zz-extra-experiment"]
    assert "ROUGE-L 8.50 → 17.25, BLEU-4 1.00 → 3.50, val loss 3.500 → 2.250 (base → tuned)" in rows["qlora-smollm2-med"]
    # Missing results say so, with no number in the row.
    for name in ("imdb-bert", "imdb-gpt2", "imdb-lstm", "imdb-finetune-minilm", "decode-chatglm2-6b"):
        assert MISSING in rows[name]
        assert not re.search(r"\d+\.\d+ %", rows[name])

    # The generated document: numbers filled from the files, missing ones marked, no placeholder left.
    doc = (workspace / "docs" / "bert-vs-gpt.md").read_text(encoding="utf-8")
    assert "{{" not in doc
    assert "+3.75 points" in doc  # 62.50 % - 58.75 %, the fixture's BERT minus GPT
    assert "62.50 % on 200 test reviews ([`imdb-scratch-bert`](../results/imdb-scratch-bert.json))" in doc
    assert f"{MISSING} (`results/imdb-bert-itpt.json`)" in doc
    assert "needs both `results/imdb-bert.json` and `results/imdb-gpt2.json`" in doc

    # Figures that have data exist, are PNGs and are linked; peak memory too (two fixtures have it).
    figures = workspace / "docs" / "figures"
    for key in ("accuracy", "train_time", "throughput", "peak_memory", "learning_curves"):
        png = figures / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
        assert f"](figures/{key}.png)" in doc
    assert not list(figures.glob(".tmp-*"))


def test_table_only_touches_only_the_readme(workspace):
    proc = run_cli(workspace, "--table-only")
    assert proc.returncode == 0, proc.stderr
    assert "imdb-scratch-bert" in (workspace / "README.md").read_text(encoding="utf-8")
    assert not (workspace / "docs" / "bert-vs-gpt.md").exists()
    assert not (workspace / "docs" / "figures").exists()


def test_no_results_everything_missing_and_stale_figures_removed(workspace):
    make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    assert (workspace / "docs" / "figures" / "accuracy.png").exists()
    shutil.rmtree(workspace / "results")  # e.g. a fresh checkout: results/ does not exist yet
    make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    rows = table_rows((workspace / "README.md").read_text(encoding="utf-8"))
    assert list(rows) == [e.name for e in EXPECTED]
    assert all(MISSING in row for row in rows.values())
    assert not list((workspace / "docs" / "figures").glob("*.png"))
    doc = (workspace / "docs" / "bert-vs-gpt.md").read_text(encoding="utf-8")
    assert "Figure `accuracy` not yet available" in doc
    assert not re.search(r"\d+\.\d+ % on", doc)


@pytest.mark.parametrize(
    "readme_text, message",
    [
        ("# no markers here\n", "results-table markers not found"),
        (f"{TABLE_START}\n{TABLE_START}\n{TABLE_END}\n", "exactly once"),
        (f"{TABLE_END}\nx\n{TABLE_START}\n", "comes before"),
    ],
)
def test_bad_markers_write_nothing(workspace, readme_text, message):
    readme = workspace / "README.md"
    readme.write_text(readme_text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        make_report(workspace / "results", readme, workspace / "docs")
    assert readme.read_text(encoding="utf-8") == readme_text
    assert not (workspace / "docs" / "bert-vs-gpt.md").exists()
    assert not (workspace / "docs" / "figures").exists()


def test_cli_errors_are_one_line_exit_2(workspace):
    (workspace / "README.md").write_text("# no markers here\n", encoding="utf-8")
    proc = run_cli(workspace)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "results-table markers not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_invalid_result_file_is_a_user_error(workspace):
    readme = workspace / "README.md"
    before = readme.read_text(encoding="utf-8")
    broken = workspace / "results" / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="broken.json"):
        make_report(workspace / "results", readme, workspace / "docs")
    broken.write_text(json.dumps({"name": "broken", "metrics": {}}), encoding="utf-8")
    with pytest.raises(UserError, match="missing key"):
        make_report(workspace / "results", readme, workspace / "docs")
    assert readme.read_text(encoding="utf-8") == before


def test_template_errors_are_caught_before_writing(workspace):
    with pytest.raises(UserError, match="unknown placeholder"):
        render_template("{{nonsense:imdb-bert}}", {}, set())
    with pytest.raises(UserError, match="unknown figure"):
        render_template("{{figure:pie}}", {}, set())
    (workspace / "docs" / "templates" / "bert-vs-gpt.md.in").write_text("x {{oops:1}}\n", encoding="utf-8")
    before = (workspace / "README.md").read_text(encoding="utf-8")
    with pytest.raises(UserError):
        make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    assert (workspace / "README.md").read_text(encoding="utf-8") == before


def test_idempotent(workspace):
    def run():
        make_report(workspace / "results", workspace / "README.md", workspace / "docs")

    run()
    first = (workspace / "README.md").read_text(encoding="utf-8"), (workspace / "docs" / "bert-vs-gpt.md").read_text(encoding="utf-8")
    run()
    second = (workspace / "README.md").read_text(encoding="utf-8"), (workspace / "docs" / "bert-vs-gpt.md").read_text(encoding="utf-8")
    assert first == second


def test_padding_benchmark_headline_shows_both_speeds_and_the_ratio():
    from imdb_llm.report.numbers import headline

    m = {"bench_dynamic_grouped_samples_per_second": 30.0, "bench_pad_to_max_length_samples_per_second": 0.88, "bench_max_length": 512}
    assert headline({"headline": "padding_benchmark", "metrics": m}) == "dynamic+grouped 30.00 vs pad-to-512 0.88 samples/s (×34.09)"
    # The file names its headline: the same metrics under a run that reports accuracy print the accuracy.
    assert headline({"headline": "test_accuracy", "metrics": {**m, "test_accuracy": 0.9, "n_test": 100}}) == "90.00 % test accuracy (n=100)"


def test_a_result_must_name_a_headline_its_metrics_can_give(workspace):
    from imdb_llm.report.numbers import headline

    with pytest.raises(ValueError, match="headline 'speed' is not one of"):
        headline({"name": "r", "headline": "speed", "metrics": {"x": 1}})
    with pytest.raises(ValueError, match="r: its test_accuracy headline cannot be read"):
        headline({"name": "r", "headline": "test_accuracy", "metrics": {"train_tokens_per_second": 10.0}})
    (workspace / "results" / "unnamed.json").write_text(json.dumps({"name": "unnamed", "metrics": {"test_accuracy": 0.5}, "command": "c", "config": {},
                                                                    "git_sha": "x", "device": "cpu", "train_seconds": 1, "date": "2026-12-05"}))
    with pytest.raises(UserError, match="unnamed.json: missing key\\(s\\) headline"):
        make_report(workspace / "results", workspace / "README.md", workspace / "docs")


def test_sft_examples_are_generated_from_the_predictions_file(workspace):
    from imdb_llm.report.answers import EXAMPLES_END, EXAMPLES_START

    rows = [{"line": i, "question": f"问题{i}|?", "reference": f"参考{i}", "base": "" if i == 2 else f"基座{i}", "adapter": f"适配{i}" * 40}
            for i in range(1, 8)]
    (workspace / "results" / "lora-smollm2-med.predictions.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    from imdb_llm.results import write_result

    write_result("lora-smollm2-med", {"n_train": 3998, "n_eval": 498, "base_rouge-l": 8.5, "adapter_rouge-l": 19.25, "eval_loss_base": 2.5,
                                      "eval_loss": 1.75, "train_tokens_per_second": 300.0}, headline="generation", train_seconds=3000, results_dir=workspace / "results")
    doc = workspace / "docs" / "qlora.md"
    doc.write_text(f"# QLoRA\n\nbefore\n{EXAMPLES_START}\nstale\n{EXAMPLES_END}\nafter\n", encoding="utf-8")
    make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# QLoRA\n\nbefore\n" + EXAMPLES_START) and text.endswith(EXAMPLES_END + "\nafter\n") and "stale" not in text
    table = [l for l in text.splitlines() if l.startswith("| ") and l[2].isdigit()]
    assert len(table) == 5 and table[0].startswith("| 1 | 问题1\\|? | 参考1 | 基座1 | 适配1")
    assert "(empty)" in table[1] and table[0].endswith("… |")  # an empty answer is shown as such; long ones are cut
    assert "first 5 of 7" in text
    assert "ROUGE-L 8.50 → 19.25" in text and "3,998 training records, validation loss on 498 records, 7 answers judged" in text


def test_the_expert_run_shows_its_most_stuck_answers_worst_first(workspace):
    """Once the medical expert has run, its predictions (tuned column, loop measure per answer) take
    over both blocks of docs/qlora.md; the older run's file is not used."""
    from imdb_llm.llm.sft.generate import write_predictions
    from imdb_llm.report.answers import EXAMPLES_END, EXAMPLES_START, WORST_END, WORST_START

    convs = [{"line": i, "messages": [{"role": "user", "content": f"问题{i}"}, {"role": "assistant", "content": f"参考{i}"}]} for i in range(6)]
    tuned = ["正常回答。", "胸部、胸部、胸部、胸部、胸部", "", "好好好好好好好好好好好好", "注意休息，多喝水。", "氧气管镜、氧气管镜、氧气管镜"]
    write_predictions(workspace / "results" / "med-expert-smollm2-cpu.predictions.jsonl", convs, {"base": ["基座"] * 6, "tuned": tuned})
    (workspace / "results" / "lora-smollm2-med.predictions.jsonl").write_text("{broken\n", encoding="utf-8")  # not read any more
    doc = workspace / "docs" / "qlora.md"
    doc.write_text(f"{EXAMPLES_START}\n{EXAMPLES_END}\n{WORST_START}\nplaceholder\n{WORST_END}\n", encoding="utf-8")
    make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    text = doc.read_text(encoding="utf-8")
    worst = [line for line in text[text.index(WORST_START):].splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert "placeholder" not in text and "| tuned model |" in text and "3 of 6 tuned answers loop" in text
    assert [line.split(" | ")[1] for line in worst] == ["9", "4", "3", "1", "1"]  # "好" x12 holds "好好好好" 9 times


def test_the_medical_recipe_search_is_tabulated_best_first_with_each_curve(workspace):
    """docs/qlora.md shows every variant of the LoRA-vs-full search, lowest loss first, with the
    validation curve the choice was read from; a variant without the metric stops the report unwritten."""
    from imdb_llm.report.table import MED_SEARCH_END, MED_SEARCH_RUN, MED_SEARCH_START
    from imdb_llm.results import write_result

    def variant(name, args, loss, history, seconds):
        return {"name": name, "args": args, "eval_loss": loss, "train_seconds": seconds, "chosen_step": history[-1][0], "train_tokens_per_second": 312.9,
                "eval_loss_history": [{"step": s, "epoch": e, "eval_loss": l} for s, e, l in history], "device": "cpu (2 cores)"}

    rows = [variant("lora32", "", 1.2512, [(63, 0.252, 1.4), (126, 0.504, 1.2512)], 1500.0),
            variant("full", "--finetuning full --learning_rate 1e-4", 1.1987, [(63, 0.252, 1.3), (126, 0.504, 1.1987)], 2400.0)]
    metrics = {"best_variant": "full", "metric": "eval_loss", "eval_loss": 1.1987, "n_variants": 2, "variants": rows}
    write_result(MED_SEARCH_RUN, metrics, headline="validation_search", config={"greater_is_better": False}, train_seconds=3900,
                 results_dir=workspace / "results")
    doc = workspace / "docs" / "qlora.md"
    doc.write_text(f"before\n{MED_SEARCH_START}\nstale\n{MED_SEARCH_END}\nafter\n", encoding="utf-8")
    make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    text = doc.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert "stale" not in text and text.startswith("before\n") and text.endswith(f"{MED_SEARCH_END}\nafter\n")
    assert table[0].startswith("| **full** (chosen) | `--finetuning full --learning_rate 1e-4` | 1.1987 | 1.300 (0.252) → 1.199 (0.504) | 126 | 40.0 min |")
    assert table[1].startswith("| lora32 | none (the base config as it was then) | 1.2512 | 1.400 (0.252) → 1.251 (0.504) | 126 | 25.0 min | 313 |")

    del rows[0]["eval_loss"]
    write_result(MED_SEARCH_RUN, metrics, headline="validation_search", config={"greater_is_better": False}, train_seconds=3900,
                 results_dir=workspace / "results")
    with pytest.raises(UserError, match="needs variants that each hold its metric 'eval_loss'"):
        make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    assert doc.read_text(encoding="utf-8") == text


def test_corrupt_predictions_file_is_a_one_line_error_and_nothing_is_written(workspace):
    (workspace / "results" / "lora-smollm2-med.predictions.jsonl").write_text('{"question": "x"\n', encoding="utf-8")
    doc = workspace / "docs" / "qlora.md"
    doc.write_text("<!-- sft-examples:start -->\n<!-- sft-examples:end -->\n", encoding="utf-8")
    readme_before = (workspace / "README.md").read_text(encoding="utf-8")
    with pytest.raises(UserError, match="lora-smollm2-med.predictions.jsonl: cannot read predictions"):
        make_report(workspace / "results", workspace / "README.md", workspace / "docs")
    assert (workspace / "README.md").read_text(encoding="utf-8") == readme_before


def test_precision_benchmark_headline_shows_both_speeds_the_ratio_and_the_cpu():
    from imdb_llm.report.numbers import headline

    result = {"headline": "precision_benchmark", "metrics": {"bench_fp32_samples_per_second": 7.5, "bench_bf16_samples_per_second": 12.75, "native_bf16": True}}
    assert headline(result) == "bf16 autocast 12.75 vs fp32 7.50 samples/s (×1.70, native bf16)"


def test_serving_benchmark_headline_shows_the_batching_gain_and_failures():
    from imdb_llm.report.numbers import headline

    m = {"clients_1_tokens_per_second": 20.4, "clients_4_tokens_per_second": 58.0, "clients_16_tokens_per_second": 105.49,
         "clients_64_tokens_per_second": 135.83, "tokens_per_second": 135.83, "failed_requests": 0, "requests": 260}
    assert headline({"headline": "serving", "metrics": m}) == "1 client 20.4 tok/s, 16 clients 105.5 (×5.17); 0 failed of 260 requests up to 64 clients"
    with_peer = {**m, "peer_clients_1_tokens_per_second": 81.6}
    assert headline({"headline": "serving", "metrics": with_peer}).startswith("1 client 20.4 tok/s, 16 clients 105.5 (×5.17); llama.cpp 1 client 81.6 (ours ×0.25)")


def test_language_model_pretraining_headline_is_its_perplexity_not_its_speed():
    from imdb_llm.report.numbers import headline

    m = {"pretrain_tokens_per_second": 8421.5, "validation_perplexity": 87.345, "n_validation_tokens": 700416}
    assert headline({"headline": "perplexity", "metrics": m}) == "validation perplexity 87.3 (700,416 tokens)"


def test_every_template_becomes_its_page_and_pretraining_curves_are_drawn(workspace):
    """docs/templates/<page>.md.in -> docs/<page>.md, each with the generated note naming its
    template; a result holding pretrain_loss_curve gets the pretraining-loss figure."""
    result = json.loads((workspace / "results" / "imdb-scratch-bert.json").read_text(encoding="utf-8"))
    result["metrics"].update({"pretrain_objective": "mlm", "pretrain_steps": 20, "pretrain_tokens": 20 * 1024,
                              "pretrain_loss_curve": [[5, 9.1], [10, 8.0], [20, 7.2]]})
    (workspace / "results" / "imdb-scratch-bert.json").write_text(json.dumps(result), encoding="utf-8")
    (workspace / "docs" / "templates" / "scratch.md.in").write_text(
        "# Scratch\n\nTokens: {{metric:imdb-scratch-bert:pretrain_tokens}}\n\n{{figure:pretrain_loss}}\n", encoding="utf-8")
    proc = run_cli(workspace)
    assert proc.returncode == 0, proc.stderr
    page = (workspace / "docs" / "scratch.md").read_text(encoding="utf-8")
    assert page.startswith("<!-- GENERATED by `make report` from docs/templates/scratch.md.in")
    assert "Tokens: 20,480" in page and "![pretrain loss](figures/pretrain_loss.png)" in page
    assert (workspace / "docs" / "figures" / "pretrain_loss.png").stat().st_size > 0
    assert (workspace / "docs" / "bert-vs-gpt.md").read_text(encoding="utf-8").startswith("<!-- GENERATED by `make report` from docs/templates/bert-vs-gpt.md.in")


def test_paired_placeholder_reads_the_saved_probabilities(tmp_path):
    import numpy as np

    from imdb_llm.probs import write_probs

    ids, labels = list(range(8)), [0, 1] * 4
    right = np.where(np.array(labels) == 1, 2.0, -2.0)
    a, b = right.copy(), right.copy()
    a[0] = 2.0             # A wrong on review 0
    b[[1, 2, 3]] *= -1     # B wrong on reviews 1, 2, 3
    for name, logits in (("bert", a), ("gpt", b)):
        write_probs(tmp_path / f"{name}.probs.parquet", {"test": (ids, labels, logits)}, {"run": name})
    results = {"bert": {"metrics": {}}, "gpt": {"metrics": {}}}
    text = render_template("{{paired:bert:gpt}}", results, set(), results_dir=tmp_path)
    assert text.startswith("+25.00 points, 95 % interval [")
    assert "the same 8 test reviews" in text and "bert right and gpt wrong on 3 reviews, the reverse on 1" in text
    assert "not yet measured" in render_template("{{paired:bert:none}}", results, set(), results_dir=tmp_path)
    with pytest.raises(UserError, match="two result names"):
        render_template("{{paired:bert}}", results, set(), results_dir=tmp_path)
    # The same files, read as student (gpt) and teacher (bert): every teacher logit is +-2 (|p - 0.5| = 0.38).
    table = render_template("{{agreement:gpt:bert}}", results, set(), results_dir=tmp_path).splitlines()
    assert table[0] == "| teacher's confidence \\|p − 0.5\\| | reviews | bert | gpt | agreement |"
    assert "| 0.3–0.4 | 8 | 87.50 % | 62.50 % | 50.00 % |" in table and table[-1] == "| all | 8 | 87.50 % | 62.50 % | 50.00 % |"
    assert "| 0.0–0.1 | 0 | — | — | — |" in table


def test_serving_placeholder_tabulates_our_levels_and_the_peers(workspace):
    from imdb_llm.report.pages import render_template

    level = lambda c, tps, steps: {"clients": c, "requests": 8, "failed_requests": 0, "incomplete_streams": 0, "tokens_per_second": tps,  # noqa: E731
                                   "latency_p50_s": 1.0, "latency_p95_s": 2.0, "ttft_p50_s": 0.1, "ttft_p95_s": 0.2, "engine": {"steps": steps, "prefills": 8}}
    result = {"name": "serve-x", "metrics": {"clients_1_tokens_per_second": 40.0}, "levels": [level(1, 40.0, 200), level(16, 120.0, 90)],
              "peer_levels": [{**level(1, 80.0, 0), "engine": None}]}
    text = render_template("{{serving:serve-x}}", {"serve-x": result}, set(), "t")
    rows = [line for line in text.splitlines() if line.startswith("| ours") or line.startswith("| llama.cpp")]
    assert rows[0].startswith("| ours | 1 | 8 | 0 | 0 | 40.0 | 1.00 |") and "| 120.0 | 3.00 |" in rows[1] and rows[1].endswith("| 90 | 8 |")
    assert rows[2].startswith("| llama.cpp | 1 |") and rows[2].endswith("| — | — |")
    assert "not yet measured" in render_template("{{serving:serve-y}}", {}, set(), "t")


def test_value_and_pct_placeholders_print_the_metric_alone():
    results = {"tok": {"metrics": {"a_tokens_per_character": 2.0265, "a_over_512_share": 0.1304}}}
    assert render_template("| {{value:tok:a_tokens_per_character}} |", results, set()) == "| 2.03 |"
    assert render_template("{{pct:tok:a_over_512_share}}", results, set()) == "13.04 %"
    assert "no `missing`" in render_template("{{value:tok:missing}}", results, set())
    with pytest.raises(UserError, match="result name and a metric key"):
        render_template("{{pct:tok}}", results, set())


def test_tokenization_headline_reads_either_corpus():
    from imdb_llm.report.numbers import headline

    chinese = {"jieba_words_per_character": 0.57, "smollm2_tokens_per_character": 2.0265, "gemma3_tokens_per_character": 0.7405}
    assert headline({"headline": "tokenization", "metrics": chinese}) == "tokens per character: smollm2 2.03, gemma3 0.74"
    imdb = {"token_budget": 512, "wp_mean_tokens": 294.9, "wp_over_512_share": 0.1304}
    assert headline({"headline": "tokenization", "metrics": imdb}) == "tokens per review: wp 295 (13% over 512)"
    with pytest.raises(ValueError, match="cannot be read"):
        headline({"headline": "tokenization", "metrics": {"token_budget": 512}})
