"""Batches for Trainer: a plain list dataset, right padding, and packing without cross-sample attention."""

from __future__ import annotations

import math
from dataclasses import dataclass

from imdb_llm.llm.sft.template import IGNORE_INDEX


class ListDataset:
    """A plain list as a torch-style dataset (``Trainer`` only needs ``__len__``/``__getitem__``)."""

    def __init__(self, items: list[dict[str, list[int]]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@dataclass
class PadCollator:
    """Right-pad ``input_ids`` with ``pad_token_id`` and ``labels`` with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict[str, list[int]]]):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackingCollator:
    """Concatenate a batch into ONE row; ``position_ids`` restart at 0 for every sample.

    No ``attention_mask`` is returned: transformers then reads the sample boundaries from the
    position ids and builds a block-diagonal causal mask (SDPA/eager) or variable-length
    flash-attention calls, so a token never attends to another sample. Each sample's first label
    is -100 (it is a prompt token), so no token is trained to predict the next sample either.
    """

    def __call__(self, features: list[dict[str, list[int]]]):
        import torch

        ids, labels, pos = [], [], []
        for f in features:
            ids += f["input_ids"]
            labels += [IGNORE_INDEX] + list(f["labels"][1:])
            pos += list(range(len(f["input_ids"])))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos])}
