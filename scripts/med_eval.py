#!/usr/bin/env python
"""Measure a medical assistant without a judge model (issue 48): answer matching, safety sets, invented
names, ROUGE and loop rate of its judged answers, the untuned base beside it (what each measure is and how
it runs: :mod:`imdb_llm.llm.med.eval_run`).

    python scripts/med_eval.py --model_name_or_path packaged:gemma3 --adapter outputs/med-expert --base_model packaged:gemma3 \
        --chat_template gemma --results_name med-expert-cpu          # make med-expert-cpu-eval
"""

from __future__ import annotations

from imdb_llm.cli import parse_args, run_main
from imdb_llm.llm.generation import GenerationOverrides
from imdb_llm.llm.med.eval_run import MedEvalArguments, run_med_eval
from imdb_llm.results import ResultArguments


@run_main
def main(argv=None):
    args, overrides, result_args, config = parse_args((MedEvalArguments, GenerationOverrides, ResultArguments), argv)
    return run_med_eval(args, overrides, result_args, config)


if __name__ == "__main__":
    main()
