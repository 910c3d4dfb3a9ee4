"""ChatGLM2's tokenizer rebuilt from ``tokenizer.model`` as a fast ``tokenizers`` BPE with byte
fallback that gives the official ids, with the ChatGLM2 chat template of :mod:`imdb_llm.llm.prompts`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from imdb_llm.cli import UserError
from imdb_llm.llm.prompts import CHATGLM2_TEMPLATE, CHATGLM2_SPECIAL_TOKENS as SPECIAL_TOKENS


def build_fast_tokenizer(sp_model_path: str | os.PathLike, model_max_length: int | None = None):
    """A ``PreTrainedTokenizerFast`` giving the official ChatGLM2 ids, from ``tokenizer.model``.

    SentencePiece BPE encodes by repeatedly merging the adjacent pair whose merged piece scores
    highest; a ``tokenizers`` BPE whose merges are ranked by that piece's id (= score order)
    does the same. The normaliser reproduces SentencePiece's identity normalisation with a dummy
    prefix and spaces as U+2581; byte fallback covers characters outside the vocabulary.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    try:
        from sentencepiece import sentencepiece_model_pb2 as model_pb2
    except ImportError:  # protobuf without sentencepiece
        from transformers.utils import sentencepiece_model_pb2_new as model_pb2

    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(sp_model_path).read_bytes())
    except Exception as exc:
        raise UserError(f"{sp_model_path}: not a SentencePiece model ({exc})") from exc
    if proto.trainer_spec.model_type != 2 or not proto.trainer_spec.byte_fallback:
        raise UserError(f"{sp_model_path}: expected ChatGLM2's BPE SentencePiece model with byte fallback")
    pieces = proto.pieces
    vocab = {p.piece: i for i, p in enumerate(pieces)}
    normal = {p.piece for p in pieces if p.type == 1}  # type 1 = NORMAL (not control/byte/unknown)
    merges = []
    for piece in (p.piece for p in pieces if p.type == 1):  # ids are in descending score order
        splits = [(vocab[piece[:k]], vocab[piece[k:]], piece[:k], piece[k:]) for k in range(1, len(piece))
                  if piece[:k] in normal and piece[k:] in normal]
        merges += [(a, b) for _, _, a, b in sorted(splits)]
    first_special = len(pieces)
    for j, tok in enumerate(SPECIAL_TOKENS):
        vocab[tok] = first_special + j

    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=pieces[proto.trainer_spec.unk_id].piece,
                              fuse_unk=True, byte_fallback=True))
    spec = proto.normalizer_spec
    steps = [normalizers.Prepend("▁")] if spec.add_dummy_prefix else []
    tk.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                   + ([decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else []))
    # The control pieces and the five GLM ids are special: skipped by decode(skip_special_tokens=True),
    # which is what the official tokenizer does (it maps them to "" when decoding).
    controls = [p.piece for p in pieces if p.type in (2, 3)]  # <unk>, <s>, </s>
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in controls + SPECIAL_TOKENS])
    eos = pieces[proto.trainer_spec.eos_id].piece
    tk.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A",
        pair="[gMASK] <sop> $A $B " + eos,
        special_tokens=[("[gMASK]", vocab["[gMASK]"]), ("<sop>", vocab["<sop>"]), (eos, proto.trainer_spec.eos_id)],
    )
    unk = pieces[proto.trainer_spec.unk_id].piece
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token=unk,
        pad_token=unk,  # the official pad id is the unk id, 0
        eos_token=eos,
        padding_side="left",  # the official tokenizer only pads on the left
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length or int(1e30),
        chat_template=CHATGLM2_TEMPLATE,
    )


def save_tokenizer(tokenizer, out: Path) -> None:
    tokenizer.save_pretrained(out)
    # "PreTrainedTokenizerFast" is the class name every transformers 5.x resolves for a plain tokenizer.json.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
