"""The LM loss with logits only where there is something to learn: the answer's tokens.

Why: a 262k-row output layer (Gemma 3) costs more per token than the whole 270M transformer body
below it, and with retrieved records in the prompt four positions in five are prompt, whose logits
the loss never reads (labels -100). The decoder runs over every position; the output layer, the
softmax and their backward run over the answer positions only. Same loss, same gradients.
"""

from __future__ import annotations

from transformers import Trainer

from imdb_llm.llm.sft.template import IGNORE_INDEX


def _causal_lm(model):
    """The ``*ForCausalLM`` under a peft or DDP wrapper (LoRA layers are injected in place, so its
    decoder computes with the adapter)."""
    while not hasattr(model, "get_output_embeddings") or model.get_output_embeddings() is None:
        model = model.get_base_model() if hasattr(model, "get_base_model") else model.module
    return model


def answer_token_logprobs(model, inputs):
    """``(log-probability of each labelled target token, the row it sits in)``, computing logits at
    the labelled positions only."""
    import torch.nn.functional as F

    lm = _causal_lm(model)
    labels = inputs["labels"]
    hidden = lm.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                              position_ids=inputs.get("position_ids")).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = (logits / cap).tanh() * cap
    return -F.cross_entropy(logits.float(), targets[keep], reduction="none"), keep.nonzero()[:, 0]


def answer_only_loss(model, inputs, num_items_in_batch=None):
    """Mean next-token cross-entropy over the labelled positions, computing logits at those only."""
    logp, rows = answer_token_logprobs(model, inputs)
    denominator = num_items_in_batch if num_items_in_batch is not None else max(len(rows), 1)
    return -logp.sum() / denominator


class AnswerOnlyLossTrainer(Trainer):
    """``Trainer`` with :func:`answer_only_loss`; evaluation reports the loss only (no logits kept)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = answer_only_loss(model, inputs, num_items_in_batch)
        return (loss, {"loss": loss}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = answer_only_loss(model, inputs)
        return loss.detach(), None, None
