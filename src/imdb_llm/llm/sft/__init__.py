"""Supervised fine-tuning (SFT) plumbing shared by ``sft_qlora.py``, ``eval_chat.py``,
``merge_adapter.py`` and ``bench_qlora.py``, one module per step, in the order a run uses them:

1. :mod:`.data` reads alpaca (``instruction``/``input``/``output``), sharegpt (``conversations``)
   or ``messages`` records from JSONL/JSON or a hub id into chat messages. Broken records are
   *errors* (file:line, what is wrong); well-formed but unusable ones (empty answer, longer than
   ``max_length``) are *skipped and reported* in a ``DataReport`` -- never dropped silently.
2. :mod:`.template` renders the prompt with the tokenizer's own chat template, so the same code
   serves ChatGLM2 (``[Round 1]\\n\\n问：…\\n\\n答：``) and SmolLM2 (``<|im_start|>``), labels only
   the answer tokens plus EOS, and picks ``max_length`` from the data's length distribution.
3. :mod:`.collate` pads, or packs a batch into one row with restarting ``position_ids`` and no
   attention mask, which transformers turns into a block-diagonal mask: no pad tokens and no
   cross-sample attention.
4. :mod:`.quant` loads a GGUF base in a form bitsandbytes can quantise, and keeps 4-bit layers
   trainable on CPUs with AVX512-BF16.
5. :mod:`.generate` answers validation questions in left-padded batches, caching every answer
   (keyed by weights, prompts and settings); :mod:`.metrics` scores them (ROUGE-1/2/L with
   ``rouge-chinese``, BLEU-4, on jieba words or characters; loop rate and distinct-2).
   :mod:`.decoding` is the one home of a model's generation defaults (and the repetition controls
   they switch on), read by the evaluation, the chat CLI and the server alike; :mod:`.search`
   chooses them on a validation set carved from train.
6. :mod:`.loss` computes the LM loss chunk by chunk, so the full ``batch x seq x vocab`` fp32
   logits are never materialised (1 GiB at 4 x 1024 x 65024).
"""
