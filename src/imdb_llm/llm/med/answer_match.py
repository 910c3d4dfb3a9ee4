"""Answer matching: does the model find the right answer among near misses? A correctness measure
that needs no judge model (issue 48).

For each judged question the model scores four answers: its reference and the references of the
three other judged questions nearest to it (cosine of character 1-2-gram TF-IDF over the
questions). Near questions make hard distractors: the same symptoms or organ, another disease or
drug. The score is the answer's log-likelihood given the question's prompt, **per character**, so it
does not favour short answers or a tokenizer that cuts Chinese into more pieces. The share of
questions whose reference scores highest is the accuracy; chance is 1/4.

It measures what ROUGE cannot: a fluent answer that names the wrong disease is a distractor here, and
a model that has learned style but not medicine prefers it as often as the right one.
"""

from __future__ import annotations

import operator
from typing import Callable, Sequence

N_DISTRACTORS = 3


def nearest_questions(questions: Sequence[str], answers: Sequence[str], k: int = N_DISTRACTORS,
                      differs: Callable[[str, str], bool] = operator.ne, chunk: int = 512) -> list[list[int]]:
    """For each question, the (at most) ``k`` other questions nearest by character 1-2-gram TF-IDF
    cosine whose answer ``differs(own, theirs)`` (by default: is not the same; a shared answer is no
    distractor). Similarities are computed ``chunk`` rows at a time, so thousands of records fit."""
    import itertools

    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(questions) != len(answers) or len(set(answers)) <= k:
        raise ValueError(f"answer matching needs more than {k} distinct answers, one per question")
    vectors = TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit_transform(questions)
    out = []
    for start in range(0, len(questions), chunk):
        for i, row in enumerate((vectors[start:start + chunk] @ vectors.T).toarray(), start=start):
            order = np.argsort(-row, kind="stable")
            out.append([int(j) for j in itertools.islice((j for j in order if j != i and differs(answers[i], answers[j])), k)])
    return out


def candidate_log_likelihoods(model, tokenizer, prompts: Sequence[str], candidates: Sequence[str], batch_size: int = 8,
                              plain_prompts: Sequence[str] | None = None, guidance: float = 1.0) -> list[float]:
    """Log-likelihood per character of ``candidates[i]`` after ``prompts[i]`` (tokens of the answer
    only, no end token). Consecutive rows that share a prompt share its forward pass: the prompt is
    run once, its KV cache copied to each candidate (four candidates after a ~300-token prompt cost
    about a third of four full rows). Only the answer positions' logits are computed.

    With ``guidance`` != 1 and ``plain_prompts`` (the same questions without the retrieved records),
    each token is scored under ``log_softmax(g * (lp_with - lp_without) + lp_without)``: the records'
    contribution amplified, as context-aware decoding does (Shi et al. 2023) and as transformers'
    ``guidance_scale`` with ``negative_prompt_ids`` decodes."""
    import torch

    if guidance != 1.0 and (plain_prompts is None or len(plain_prompts) != len(prompts)):
        raise ValueError("guidance needs one plain prompt per prompt")

    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        start = 0
        while start < len(prompts):
            stop = start + 1
            while stop < len(prompts) and prompts[stop] == prompts[start] and stop - start < batch_size:
                stop += 1
            with torch.no_grad():
                logprobs, ids, rows = _answer_logprobs(model, tokenizer, prompts[start], candidates[start:stop])
                if guidance != 1.0:
                    plain, _, _ = _answer_logprobs(model, tokenizer, plain_prompts[start], candidates[start:stop])
                    logprobs = torch.log_softmax(guidance * (logprobs - plain) + plain, -1)
                token_lp = logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
                out += [float(token_lp[i, :len(r)].sum()) / max(len(a.strip()), 1) for i, (r, a) in enumerate(zip(rows, candidates[start:stop]))]
            start = stop
    finally:
        model.train(was_training)
    return out


def _answer_logprobs(model, tokenizer, prompt: str, answers: Sequence[str]):
    """Next-token log-probabilities at each answer position of ``answers`` after one ``prompt`` (one
    prompt pass with a cache, then the answers as a right-padded batch continuing from it): returns
    ``(logprobs [rows, width, vocab], the answers' padded ids, each answer's ids)``."""
    import torch

    from imdb_llm.llm.loading import forward_kwargs

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rows = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    cache_kw, _ = forward_kwargs(model)  # "cache" in new transformers, "past_key_values" before
    first = model(input_ids=torch.tensor([p], device=device), use_cache=True, logits_to_keep=1)
    cache = getattr(first, cache_kw, None)
    cache = first.past_key_values if cache is None else cache
    cache.batch_repeat_interleave(len(rows))
    width = max(max(len(r) for r in rows), 1)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(p) + [1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    positions = torch.arange(len(p), len(p) + width, device=device).expand(len(rows), -1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_kw: cache}).logits
    # Position t of the answer is predicted by the prompt's last logits (t = 0) or the answer's t - 1.
    logprobs = torch.log_softmax(torch.cat([first.logits[:, -1:].expand(len(rows), -1, -1), logits[:, :-1]], 1).float(), -1)
    return logprobs, ids, rows


def answer_match(model, tokenizer, questions: Sequence[str], references: Sequence[str], render: Callable[[str], str],
                 batch_size: int = 8, render_plain: Callable[[str], str] | None = None, guidance: float = 1.0) -> dict:
    """Accuracy of picking each question's reference among itself and its :func:`nearest_questions`'
    references, scored by :func:`candidate_log_likelihoods` after ``render(question)`` (the prompt
    the system uses: template, retrieval, system prompt). Returns the accuracy, the chance level
    and each question's pick (0 = the reference)."""
    distractors = nearest_questions(questions, references)
    prompts, plain, candidates = [], [], []
    for i, question in enumerate(questions):
        prompt, bare = render(question), render_plain(question) if render_plain else None
        for option in [i, *distractors[i]]:
            prompts.append(prompt)
            plain.append(bare)
            candidates.append(references[option])
    scores = candidate_log_likelihoods(model, tokenizer, prompts, candidates, batch_size, plain if render_plain else None, guidance)
    width = N_DISTRACTORS + 1
    picks = [_pick(scores[i * width:(i + 1) * width]) for i in range(len(questions))]
    return {"accuracy": round(sum(p == 0 for p in picks) / len(picks), 4), "chance": round(1 / width, 4), "n": len(picks),
            "picks": picks, "distractors": distractors}


def overlap_answer_match(questions: Sequence[str], references: Sequence[str], contexts: Sequence[str]) -> dict:
    """Answer matching with no model: each candidate scored by the share of its character bigrams found in
    ``contexts[i]`` (the question, or the question and the records retrieved for it), same distractors,
    same tie rule. What the words alone give away: the floor a model must clear before its score says it
    knows medicine."""
    def bigrams(text: str) -> set[str]:
        return {text[i:i + 2] for i in range(len(text) - 1)}

    distractors = nearest_questions(questions, references)
    picks = []
    for i, context in enumerate(contexts):
        seen = bigrams(context)
        picks.append(_pick([len(bigrams(references[j]) & seen) / max(len(bigrams(references[j])), 1) for j in [i, *distractors[i]]]))
    return {"accuracy": round(sum(p == 0 for p in picks) / len(picks), 4), "n": len(picks)}


def _pick(scores: Sequence[float], tolerance: float = 1e-6) -> int:
    """0 when the reference (first) beats every distractor by more than rounding noise, else the best
    distractor: a tie is not a win, so a model that scores every answer alike is never right."""
    best = max(range(1, len(scores)), key=lambda j: scores[j])
    return 0 if scores[0] > scores[best] + tolerance else best
