"""Supervised fine-tuning of a chat model, top to bottom: load and ground the records, encode them, build
the model (QLoRA, LoRA or every weight), train (resumable), then judge (:mod:`imdb_llm.llm.sft.judging`).
``scripts/sft_qlora.py`` parses the arguments (:mod:`imdb_llm.llm.sft.arguments`) and calls :func:`run_sft`."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from imdb_llm.cli import UserError
from imdb_llm.llm.med.preference import attach_rejected
from imdb_llm.llm.med.prepare import answer_match_callbacks, clean_loaded, ground_all
from imdb_llm.llm.prompts import apply_template_override
from imdb_llm.llm.sft.arguments import ModelArguments, Run
from imdb_llm.llm.sft.collate import ListDataset, PackingCollator, PadCollator
from imdb_llm.llm.sft.data import DataReport, carve, load_conversations, seeded_subset
from imdb_llm.llm.sft.judging import judge, save_outputs
from imdb_llm.llm.sft.quant import is_cuda, keep_4bit_trainable, quantizable_model_path
from imdb_llm.llm.sft.template import choose_max_length, encode_conversation, encode_dataset, length_stats
from imdb_llm.precision import precision_flags, precision_label
from imdb_llm.progress import ProgressLine
from imdb_llm.resume import RunLog, SettingsRecord, TrainClock, resolve_resume, run_settings, timed_train
from imdb_llm.threads import set_torch_threads


def run_sft(run: Run, log, extra_callbacks=None):
    """One fine-tuning run, start to end; returns its metrics."""
    from transformers import set_seed

    set_seed(run.training.seed)
    print(f"torch threads: {set_torch_threads()}")  # one per physical core unless OMP_NUM_THREADS says otherwise
    run.training = dataclasses.replace(run.training, **precision_flags(run.model.mixed_precision))
    precision = ("4-bit NF4 weights, " if run.model.load_in_4bit else "full-precision weights, ") + precision_label(run.model.mixed_precision)
    print(f"precision: {precision}")
    # What the judging starts from: the base model's generation defaults and the explicit flags;
    # candidates are checked now, so a typo fails before hours of training.
    judging = run.overrides.resolve(run.model.model_name_or_path)
    candidates = run.search.parsed(judging)
    if candidates and not run.data.carve_validation:
        raise UserError("--decoding_candidates need --carve_validation: settings are chosen on held-out training records, "
                        "never on validation_file, which is judged at the end")

    data = load_data(run)  # data first: a broken file should fail in a second, not after loading a 6B model
    settings = run_settings(run.model, run.data, training_args=run.training)
    resume = resolve_resume(run.training, settings)  # refuses a checkpoint of a run with other settings
    if resume:
        print(f"resuming from {resume}", flush=True)
    log = RunLog(resume, log)  # the result's log: every sitting's, as checkpoints carry it
    # A GGUF base is de-quantised once into safetensors: transformers neither loads a GGUF file in
    # 4-bit nor trains a model it loaded from one (it counts as "quantized with GGUF").
    model_path = quantizable_model_path(run.model.model_name_or_path, run.model.cache_dir)
    tokenizer, train_data, loss_data, max_length, lengths = encode_data(run, data, model_path)
    model, weight_dtype, n_4bit = build_model(run, model_path)
    callbacks = [*(extra_callbacks or []), *answer_match_callbacks(run.med, tokenizer, data, run.training.seed)]
    trainer = build_trainer(run, model, tokenizer, train_data, loss_data, callbacks)

    metrics: dict = {"n_train": len(train_data), "n_eval": len(loss_data), "n_carved": len(data["carved"]), "max_length": max_length,
                     "quantized_linear_layers": n_4bit}
    with base_weights(model, run.model):  # the base model = the adapter switched off, or (full) before training
        metrics["eval_loss_base"] = trainer.evaluate()["eval_loss"]
    print(f"validation loss of the base model: {metrics['eval_loss_base']:.4f}")
    train_seconds = train(trainer, resume, settings, run, train_data, metrics, log)

    # Save at once: the tuned model is usable even if the judging below is interrupted.
    trainer.save_model(run.training.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(run.training.output_dir)
        if data["index"] is not None:  # chat and serving retrieve from the same records
            data["index"].save(run.training.output_dir, run.med)
    chosen, search_table, predictions = judge(run, data, model, tokenizer, model_path, weight_dtype, candidates, judging, metrics)
    if trainer.is_world_process_zero():
        report = {"train": data["train_report"].summary(), "validation": data["loss_report"].summary(),
                  "judged": data["judge_report"].summary(), "max_length": max_length, "train_length_stats": length_stats(lengths)}
        save_outputs(run, metrics, report, chosen, search_table, predictions, data["judge"], precision, train_seconds, log)
    return metrics


def load_data(run: Run) -> dict[str, Any]:
    """Train, loss, search and judged records, each with its report. Without a carve, validation_file
    serves for the loss and the judging alike (as before); with one, it is only judged."""
    d, seed = run.data, run.data.subset_seed
    train_convs, train_report = load_conversations(d.train_file, "train", d.system_prompt)
    valid_convs, valid_report = load_conversations(d.validation_file, "validation", d.system_prompt)
    train_convs, valid_convs = clean_loaded(train_convs, train_report, run.med), clean_loaded(valid_convs, valid_report, run.med)
    train_convs, carved = carve(train_convs, d.carve_validation, seed)  # before any subset: the carve never moves
    train_convs = seeded_subset(train_convs, d.max_train_samples, seed)
    if carved:
        loss_convs = seeded_subset(carved, d.max_eval_samples, seed)
        loss_report = DataReport(source=f"{train_report.source} (carved: {len(carved)} records held out as validation)", read=len(carved))
        pool, judge_report = valid_convs, valid_report
    else:
        loss_convs, loss_report = seeded_subset(valid_convs, d.max_eval_samples, seed), valid_report
        pool, judge_report = loss_convs, DataReport(source=valid_report.source, read=valid_report.read)
    n_judge = run.gen.generate_eval_samples
    judge_convs = seeded_subset(pool, n_judge, seed) if n_judge else []
    judge_report.kept = len(judge_convs)
    search_convs = seeded_subset(carved, run.search.decoding_search_samples, seed) if carved and run.search.decoding_candidates else []
    print(f"records: {len(train_convs)} to train on, {len(loss_convs)} for the validation loss, {len(search_convs)} for the decoding "
          f"search, {len(judge_convs)} judged at the end ({judge_report.source})", flush=True)
    data = {"train": train_convs, "loss": loss_convs, "carved": carved, "search": search_convs, "judge": judge_convs,
            "train_report": train_report, "loss_report": loss_report, "judge_report": judge_report}
    data["index"] = ground_all(data, run.med)  # retrieved records into every prompt (--retrieval_k), from the records trained on
    return data


def encode_data(run: Run, data: dict, model_path: str):
    """Tokenizer (the model's own chat template), encoded train/loss sets (loss on the answer + EOS
    only) and the length budget chosen from the training lengths."""
    from transformers import AutoConfig

    from imdb_llm.llm.loading import config_context_length, load_tokenizer

    tokenizer = apply_template_override(load_tokenizer(model_path), run.data.chat_template)
    for conv in data["train"] + data["loss"]:
        conv["_enc"] = encode_conversation(tokenizer, conv["messages"])
    if run.med.preference_weight:  # a near-miss answer beside each training answer
        print(f"preference pairs: {attach_rejected(tokenizer, data['train'], run.med, run.data.subset_seed)} of {len(data['train'])}")
    lengths = [len(c["_enc"]["input_ids"]) for c in data["train"]]
    model_config = AutoConfig.from_pretrained(model_path) if not model_path.startswith("packaged:") else None
    cap = config_context_length(model_config) if model_config is not None else None
    max_length = run.data.max_length or choose_max_length(lengths, run.data.max_length_percentile, cap=cap)
    print(f"train token lengths {length_stats(lengths)} -> max_length {max_length}"
          f"{'' if run.data.max_length else f' (p{run.data.max_length_percentile:g} of the data)'}")
    train_data = ListDataset(encode_dataset(tokenizer, data["train"], data["train_report"], max_length))
    loss_data = ListDataset(encode_dataset(tokenizer, data["loss"], data["loss_report"], max_length))
    print(data["train_report"].describe())
    print(data["loss_report"].describe())
    return tokenizer, train_data, loss_data, max_length, lengths


def build_model(run: Run, model_path: str):
    """The model to train: LoRA on a 4-bit or full-precision base, or every weight (full).
    Returns ``(model, weight_dtype, number of 4-bit layers)``."""
    from imdb_llm.llm.loading import load_causal_lm

    m, training_args = run.model, run.training
    device_map = {"": training_args.local_process_index} if is_cuda() else None  # one full copy per process under DDP
    # Weights: 4-bit (bf16 compute) for QLoRA; bf16 for LoRA on a GPU; else fp32 (on a CPU bf16 is
    # autocast: the weights and optimizer stay exact, the matmuls run in bf16; full fine-tuning
    # keeps fp32 master weights everywhere).
    lora_bf16 = m.finetuning == "lora" and (m.load_in_4bit or is_cuda() or run.med.lora_bf16_base)
    weight_dtype = "bfloat16" if training_args.bf16 and lora_bf16 else "float32"
    model = load_causal_lm(model_path, load_in_4bit=m.load_in_4bit, dtype=weight_dtype, device_map=device_map,
                           attn_implementation=m.attn_implementation)
    model.config.use_cache = False  # the KV cache is for generation; it also disables packed-sequence masks
    if training_args.gradient_checkpointing:
        training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if m.finetuning == "full":
        if run.med.freeze_embeddings:  # a 262k x 640 table (Gemma 3) is 63 % of the weights: no gradient, no optimizer state
            model.get_input_embeddings().weight.requires_grad_(False)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"full fine-tuning: {n:,} parameters trainable")
        return model, weight_dtype, 0
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if m.load_in_4bit:
        # Norms / embeddings to fp32 and input grads on, so checkpointed layers get gradients.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=training_args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = m.lora_target_modules
    lora = LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")])
    model = PeftModel.from_pretrained(model, m.init_adapter, is_trainable=True) if m.init_adapter else get_peft_model(model, lora)
    # Before any evaluation: on CPUs with AVX512-BF16, bitsandbytes would otherwise repack the 4-bit
    # weights for inference during the base-model evaluation and training would then fail.
    n_4bit = keep_4bit_trainable(model)
    model.print_trainable_parameters()
    return model, weight_dtype, n_4bit


def build_trainer(run: Run, model, tokenizer, train_data, loss_data, extra_callbacks):
    import torch
    from transformers import Trainer

    from imdb_llm.llm.med.preference import PreferenceCollator, PreferenceTrainer
    from imdb_llm.llm.sft.answer_loss import AnswerOnlyLossTrainer

    training_args = run.training
    # Paged 8-bit AdamW pages optimizer state to host RAM under memory pressure; it is a CUDA
    # feature. bitsandbytes' CPU backend runs it too, but say so if we ever have to switch.
    if "paged" in training_args.optim and not is_cuda():
        try:
            import bitsandbytes as bnb

            bnb.optim.PagedAdamW8bit([torch.nn.Parameter(torch.zeros(4))], lr=1e-3).step()
        except Exception as exc:  # noqa: BLE001
            print(f"optimizer {training_args.optim} unavailable without CUDA ({type(exc).__name__}); using adamw_torch")
            training_args.optim = "adamw_torch"
    collator = PackingCollator() if run.data.packing else PadCollator(tokenizer.pad_token_id)
    trainer_class, extra = AnswerOnlyLossTrainer if run.med.answer_only_logits else Trainer, {}
    if run.med.preference_weight:
        trainer_class, collator, extra = PreferenceTrainer, PreferenceCollator(tokenizer.pad_token_id), {"preference": run.med}
    return trainer_class(model=model, args=training_args, train_dataset=train_data, eval_dataset=loss_data, data_collator=collator,
                         processing_class=tokenizer, callbacks=[ProgressLine(), *(extra_callbacks or [])], **extra)




@contextlib.contextmanager
def base_weights(model, model_args: ModelArguments):
    """``model`` computing as the base model: the adapter switched off; under full fine-tuning the
    model itself, which is the base only until it trains."""
    with model.disable_adapter() if model_args.finetuning == "lora" else contextlib.nullcontext():
        yield model


def train(trainer, resume, settings, run: Run, train_data, metrics, log: RunLog) -> float:
    """Train (resumable: checkpoints hold weights, optimizer, scheduler, RNG, data position, time and log) and
    record the validation losses; with ``load_best_model_at_end`` the best evaluated checkpoint is
    the one kept, which chooses the training length on the carved validation. Returns the seconds
    trained over every part of the run."""
    start_step = int(resume.rstrip("/").rsplit("-", 1)[1]) if resume else 0
    clock = TrainClock(resume)  # train_seconds adds up across interruptions
    trainer.add_callback(clock)
    trainer.add_callback(SettingsRecord(settings))
    trainer.add_callback(log)
    out, segment = timed_train(trainer, resume)
    args, state = run.training, trainer.state
    metrics.update({"train_seconds_this_process": round(segment, 1), "train_loss": out.training_loss, "global_step": out.global_step,
                    "resumed_from_step": start_step})
    # Tokens/s over the real (unpadded) tokens of the samples this process trained on.
    samples = (out.global_step - start_step) * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    mean_tokens = sum(len(x["input_ids"]) for x in train_data.items) / len(train_data)
    metrics["train_tokens_per_second"] = round(samples * mean_tokens / segment, 1) if segment > 0 else None
    history = [{"step": e["step"], "epoch": round(e.get("epoch", 0), 3), "eval_loss": round(e["eval_loss"], 4)}
               for e in state.log_history if "eval_loss" in e and e.get("step", 0) > 0]
    if history:
        metrics["eval_loss_history"] = history
    if args.load_best_model_at_end and state.best_model_checkpoint:
        metrics["chosen_step"] = int(state.best_model_checkpoint.rstrip("/").rsplit("-", 1)[1])
        metrics["chosen_epoch"] = next((h["epoch"] for h in history if h["step"] == metrics["chosen_step"]), None)
        # The loss of the weights now loaded (best_metric is the choosing metric, which need not be the loss).
        metrics["eval_loss"] = next((h["eval_loss"] for h in history if h["step"] == metrics["chosen_step"]), None)
        metrics[f"chosen_{args.metric_for_best_model}"] = float(state.best_metric)
    else:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    print(f"validation loss after training: {metrics['eval_loss']:.4f}")
    # Every part of the run, in the summary too: scripts/tune_recipe.py adds up its variants' times from it.
    metrics["train_seconds"] = round(clock.before + segment, 1)
    return clock.before + segment
