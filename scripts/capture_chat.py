#!/usr/bin/env python
"""Ask the chat CLI a few questions in a real (pseudo-)terminal and put the session into a doc page.

    python scripts/capture_chat.py                   # the tuned medical expert, five questions -> docs/qlora.md
    python scripts/capture_chat.py --command "make chatglm-chat MODEL=packaged:smollm2" --document /tmp/page.md

The page shows what a person typing into ``make chatglm-chat`` saw, not a re-rendering: the command's
terminal output between ``<!-- chat-transcript:start -->`` and ``<!-- chat-transcript:end -->``.
A command that fails or hangs leaves the page as it was.
"""

import datetime
import shlex
from dataclasses import dataclass, field

from imdb_llm.cli import UserError, parse_args, run_main
from imdb_llm.transcript import run_in_terminal, write_section

QUESTIONS = [
    "我最近总是口干、多饮、多尿，体重也下降了，可能是什么病？",
    "高血压患者在饮食上需要注意什么？",
    "孩子发烧到39度，应该怎么处理？",
    "慢性胃炎可以吃哪些药？",
    "长期失眠对身体有什么影响，怎么改善？",
]


@dataclass
class CaptureArguments:
    """What to run, what to ask, and where the transcript goes."""

    command: str = field(default="make chatglm-chat MODEL=outputs/smollm2-med-expert",
                         metadata={"help": "The chat command, as typed in a shell."})
    questions: list[str] = field(default_factory=lambda: list(QUESTIONS), metadata={"help": "One input line each."})
    document: str = field(default="docs/qlora.md", metadata={"help": "Markdown page with the transcript markers."})
    section: str = field(default="chat-transcript", metadata={"help": "Marker name: <!-- NAME:start --> ... <!-- NAME:end -->."})
    prompt: str = field(default="you> ", metadata={"help": "What the chat CLI prints when it waits for input."})
    timeout: float = field(default=900.0, metadata={"help": "Seconds to wait for each prompt (model loading included)."})

    def __post_init__(self):
        if not self.questions:
            raise UserError("--questions: give at least one")
        if self.timeout <= 0:
            raise UserError("--timeout must be > 0")


@run_main
def main(argv=None):
    (args, _config) = parse_args([CaptureArguments], argv)
    argv_ = shlex.split(args.command)
    if not argv_:
        raise UserError("--command is empty")
    session = run_in_terminal(argv_, args.questions, prompt=args.prompt, timeout=args.timeout)
    if session.exit_status != 0:
        raise UserError(f"{args.command!r} exited with status {session.exit_status}; {args.document} left unchanged. "
                        f"Its last output: {session.text[-300:]!r}")
    stamp = datetime.date.today().isoformat()
    asked = f"{len(args.questions)} question{'s' if len(args.questions) != 1 else ''}"
    body = (f"Captured by `python scripts/capture_chat.py` on {stamp} ({session.seconds / 60:.1f} min): `{args.command}` "
            f"run in a pseudo-terminal, {asked} typed at its prompt, its output as printed.\n\n"
            f"```text\n{session.text.strip()}\n```")
    write_section(args.document, args.section, body)
    print(f"{asked} answered in {session.seconds:.0f} s -> {args.document} ({args.section})")
    return session


if __name__ == "__main__":
    main()
