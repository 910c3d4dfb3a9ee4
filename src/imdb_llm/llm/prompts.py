"""The prompt registry: every chat template the project writes, and the one check that a tokenizer
can render chats (as litgpt's ``prompts.py`` and FastChat's ``conversation.py``).

* :data:`CHATGLM2_TEMPLATE` - ChatGLM2-6B's prompt (``tokenization_chatglm.py: build_prompt``),
  starting with the ``[gMASK]<sop>`` prefix; the converter writes it into every converted folder.
* ``NAMED_TEMPLATES`` - what ``--chat_template NAME`` installs on a tokenizer that has none:
  ``chatglm2`` (the same rounds without the prefix, for tokenizers that lack those two tokens) and
  ``chatml`` (``<|im_start|>role ... <|im_end|>``, SmolLM2's format) and ``gemma`` (Gemma 3's turns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from imdb_llm.cli import UserError

# ChatGLM2's five extra ids follow the 64,789 SentencePiece pieces. The official tokenizer calls
# ids 64792/64793 "sop"/"eop" but never matches them in text; we name them "<sop>"/"<eop>" (as
# GLM-4 does) so that the word "sop" in a prompt stays plain text while a chat template can still
# spell the prefix.
CHATGLM2_SPECIAL_TOKENS = ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]
CHATGLM2_PREFIX = "[gMASK]<sop>"


def chatglm2_template(prefix: str = CHATGLM2_PREFIX) -> str:
    """ChatGLM2's prompt: rounds counted from 1, "问：" = question, "答：" = answer, the answer of a
    finished round followed by a blank line. A system message has no slot in ChatGLM2; it is written
    before the first round. The answer sits in a {% generation %} block for assistant masks."""
    return (
        "{{- '" + prefix + "' -}}"
        "{%- set ns = namespace(round=0) -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{{ message['content'] }}{{ '\\n\\n' }}"
        "{%- elif message['role'] == 'user' -%}{%- set ns.round = ns.round + 1 -%}"
        "{{ '[Round ' ~ ns.round ~ ']\\n\\n问：' ~ message['content'] ~ '\\n\\n答：' }}"
        "{%- elif message['role'] == 'assistant' -%}{% generation %}{{ message['content'] }}{% endgeneration %}"
        "{%- if not loop.last -%}{{ '\\n\\n' }}{%- endif -%}"
        "{%- else -%}{{ raise_exception('ChatGLM2 knows the roles system, user and assistant, not ' ~ message['role']) }}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


CHATGLM2_TEMPLATE = chatglm2_template()

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Gemma 3's turns (<start_of_turn>user / model), with BOS first as Gemma needs; a system message is
# written at the top of the first user turn, as Gemma's own template does. For the base model
# (packaged:gemma3), which ships no template: its vocabulary already holds the turn tokens.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ '<start_of_turn>user\n' ~ m['content'] ~ '\n\n' }}"
    "{% else %}{% if not (loop.index0 == 1 and messages[0]['role'] == 'system') %}"
    "{{ '<start_of_turn>' ~ ('model' if m['role'] == 'assistant' else 'user') ~ '\n' }}{% endif %}"
    "{{ m['content'] ~ '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

NAMED_TEMPLATES = {"chatglm2": chatglm2_template(prefix=""), "chatml": CHATML_TEMPLATE, "gemma": GEMMA_TEMPLATE}


def require_chat_template(tokenizer, hint: str) -> None:
    """Raise ``UserError`` ("the tokenizer has no chat template: <hint>") unless it has one."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"the tokenizer has no chat template; {hint}")


def apply_template_override(tokenizer, chat_template: str | None):
    """Install ``chat_template`` (a name in ``NAMED_TEMPLATES`` or a Jinja file) and check the tokenizer has one."""
    if chat_template:
        if chat_template in NAMED_TEMPLATES:
            tokenizer.chat_template = NAMED_TEMPLATES[chat_template]
        elif Path(chat_template).is_file():
            tokenizer.chat_template = Path(chat_template).read_text(encoding="utf-8")
        else:
            raise UserError(f"--chat_template {chat_template}: neither {'/'.join(NAMED_TEMPLATES)} nor a file")
    require_chat_template(tokenizer, "pass --chat_template chatglm2 or a Jinja file")
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token; the model could never learn to stop")
    return tokenizer


def render_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """The text the model sees before it answers: every turn but the last, plus the answer cue."""
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)


def prompt_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """:func:`render_prompt` as token ids (the template writes its own special tokens, so none are added:
    what ``apply_chat_template(tokenize=True)`` does)."""
    return list(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
