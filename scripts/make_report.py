"""Regenerate the README results table, the docs pages with a template (docs/templates/*.md.in) and docs/figures/*.png from results/*.json.

    make report           # README table + docs/bert-vs-gpt.md, docs/scratch.md + figures
    make results-table    # README table only (--table-only)

The numbers in the README and in docs/bert-vs-gpt.md are never typed by hand: every one of them
comes from a result file written by the run that measured it (see src/imdb_llm/results.py). A
result that has no file yet is printed as "not yet measured".
"""

from __future__ import annotations

from dataclasses import dataclass, field


from imdb_llm.cli import parse_args, run_main
from imdb_llm.report.pages import make_report


@dataclass
class ReportArguments:
    results_dir: str = field(default="results", metadata={"help": "Folder holding <name>.json result files."})
    readme: str = field(default="README.md", metadata={"help": "README whose results-table markers get the table."})
    docs_dir: str = field(default="docs", metadata={"help": "Where bert-vs-gpt.md and figures/ are written."})
    template: str | None = field(
        default=None, metadata={"help": "Template for bert-vs-gpt.md (default: <docs_dir>/templates/bert-vs-gpt.md.in)."}
    )
    table_only: bool = field(default=False, metadata={"help": "Only update the README table."})


@run_main
def main(argv=None) -> None:
    args, _config = parse_args([ReportArguments], argv)
    summary = make_report(args.results_dir, args.readme, args.docs_dir, args.template, args.table_only)
    print(f"{len(summary['results'])} result file(s) read from {args.results_dir}; README table updated in {summary['readme']}")
    if summary["doc"]:
        print(f"wrote {summary['doc']} and {len(summary['figures'])} figure(s): {', '.join(summary['figures']) or 'none'}")
    if summary["missing"]:
        print("not yet measured: " + ", ".join(summary["missing"]))


if __name__ == "__main__":
    main()
