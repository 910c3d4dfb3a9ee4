"""Everything the README table and ``docs/bert-vs-gpt.md`` say in numbers comes from here.

``make report`` reads ``results/*.json`` (written by :func:`imdb_llm.results.write_result`) and
regenerates four things:

* the README results table, between ``<!-- results-table:start -->`` and
  ``<!-- results-table:end -->`` (nothing outside the markers is touched);
* every ``docs/<page>.md`` that has a hand-written template ``docs/templates/<page>.md.in``
  (``bert-vs-gpt``, ``scratch``), whose ``{{...}}`` placeholders are filled from result files;
* the figures in ``docs/figures/`` (accuracy, training time, throughput, peak memory, learning
  curves, pretraining loss).
* the side-by-side answers in ``docs/qlora.md`` (between ``<!-- sft-examples:start -->`` and
  ``<!-- sft-examples:end -->``), from the medical LoRA run's predictions file.

A result that has no file is printed as *not yet measured*: the report never types a number that
a result file does not hold.

Modules: :mod:`.numbers` (reading and formatting one result), :mod:`.table` (the expected rows of
``expected.yaml``, the README table, the answers side by side), :mod:`.figures` and :mod:`.pages`
(the templates and :func:`~imdb_llm.report.pages.make_report`).
"""
