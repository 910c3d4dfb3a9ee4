# Fine-tuning pretrained BERT / GPT-2 / any hub or local model on IMDB (scripts/finetune_classifier.py,
# docs/finetune.md). MODEL= on the command line swaps the model of any target below, e.g.
#   make imdb-bert MODEL=bert-large-uncased      make imdb-finetune MODEL=packaged:smollm2 CONFIG=configs/finetune_gpt2.yaml
# (the result file is then named imdb-finetune-<MODEL>). Extra flags go through ARGS.
.PHONY: imdb-bert imdb-bert-itpt imdb-gpt2 imdb-gpt2-itpt imdb-roberta-large imdb-finetune imdb-finetune-minilm imdb-finetune-minilm-cpu imdb-finetune-minilm-cpu-pilot imdb-finetune-minilm-cpu-tune imdb-finetune-minilm-cpu-precision-bench imdb-finetune-smollm2 imdb-finetune-smollm2-cpu imdb-finetune-smollm2-cpu-tune imdb-finetune-smollm2-cpu-full imdb-ensemble-pretrained imdb-ensemble-pretrained-minilm imdb-bert-ddp gpu-finetune-prep

CONFIG ?= configs/finetune_bert_base.yaml
# MODEL only counts when given on the command line or in the environment (mk/serve.mk has its own default).
FT_MODEL_SET = $(filter command line environment,$(origin MODEL))
FT_NAME = imdb-finetune-$(subst /,-,$(subst :,-,$(MODEL)))
FT_MODEL_ARGS = $(if $(FT_MODEL_SET),--model_name_or_path $(MODEL) --results_name $(FT_NAME) --output_dir outputs/$(FT_NAME))
FT = $(PY) scripts/finetune_classifier.py

imdb-bert:  ## bert-base-uncased, head+tail 512 (Sun et al. 2019: 94.58 %) -> results/imdb-bert.json
	RUN_COMMAND="make imdb-bert$(if $(FT_MODEL_SET), MODEL=$(MODEL))$(ARGS_SUFFIX)" $(FT) configs/finetune_bert_base.yaml $(FT_MODEL_ARGS) $(ARGS)

imdb-bert-itpt:  ## bert-base + in-task MLM pretraining on IMDB (100k steps), then fine-tune (95.63 % reported)
	RUN_COMMAND="make imdb-bert-itpt$(ARGS_SUFFIX)" $(FT) configs/itpt_bert_base.yaml $(if $(FT_MODEL_SET),--model_name_or_path $(MODEL)) $(ARGS)
	RUN_COMMAND="make imdb-bert-itpt$(ARGS_SUFFIX)" $(FT) configs/finetune_bert_base_itpt.yaml $(ARGS)

imdb-gpt2:  ## GPT-2 (124M), EOS as pad, last-token head, head+tail 512 -> results/imdb-gpt2.json
	RUN_COMMAND="make imdb-gpt2$(if $(FT_MODEL_SET), MODEL=$(MODEL))$(ARGS_SUFFIX)" $(FT) configs/finetune_gpt2.yaml $(FT_MODEL_ARGS) $(ARGS)

imdb-gpt2-itpt:  ## GPT-2 + in-task causal-LM pretraining on IMDB (20k steps), then fine-tune
	RUN_COMMAND="make imdb-gpt2-itpt$(ARGS_SUFFIX)" $(FT) configs/itpt_gpt2.yaml $(ARGS)
	RUN_COMMAND="make imdb-gpt2-itpt$(ARGS_SUFFIX)" $(FT) configs/finetune_gpt2.yaml --model_name_or_path outputs/gpt2-itpt --output_dir outputs/imdb-gpt2-itpt --results_name imdb-gpt2-itpt $(ARGS)

imdb-roberta-large:  ## RoBERTa-large (355M), ~96.5 % in the literature -> results/imdb-roberta-large.json
	RUN_COMMAND="make imdb-roberta-large$(ARGS_SUFFIX)" $(FT) configs/finetune_roberta_large.yaml $(ARGS)

imdb-finetune:  ## any model: make imdb-finetune MODEL=<hub id|folder|.gguf|packaged:NAME> [CONFIG=configs/finetune_gpt2.yaml for decoders]
	@test -n "$(FT_MODEL_SET)" || { echo "error: give the model, e.g. make imdb-finetune MODEL=distilroberta-base" >&2; exit 2; }
	RUN_COMMAND="make imdb-finetune MODEL=$(MODEL) CONFIG=$(CONFIG)$(ARGS_SUFFIX)" $(FT) $(CONFIG) $(FT_MODEL_ARGS) $(ARGS)

imdb-finetune-minilm:  ## all-MiniLM-L6-v2 from its PyPI package (offline) + padding speed figure -> results/imdb-finetune-minilm.json
	RUN_COMMAND="make imdb-finetune-minilm$(ARGS_SUFFIX)" $(FT) configs/finetune_minilm.yaml $(ARGS)

imdb-finetune-minilm-cpu:  ## all-MiniLM-L6-v2 on all of IMDB on a 2-core CPU (~2 h in bf16; resumable: rerun to continue) -> results/imdb-finetune-minilm-cpu.json
	RUN_COMMAND="make imdb-finetune-minilm-cpu$(ARGS_SUFFIX)" $(FT) configs/finetune_minilm_cpu.yaml $(ARGS)

imdb-finetune-minilm-cpu-tune:  ## the recipe of imdb-finetune-minilm-cpu chosen on validation: 5 variants on 3,000 reviews, test never read (~35 min) -> results/imdb-finetune-minilm-cpu-tune.json
	RUN_COMMAND="make imdb-finetune-minilm-cpu-tune$(ARGS_SUFFIX)" $(PY) scripts/tune_recipe.py configs/finetune_minilm_cpu_tune.yaml $(ARGS)

imdb-finetune-minilm-cpu-pilot:  ## MiniLM, 4,000 train / 3,000 test reviews, 256 tokens (~10 min on 2 cores): the encoder half of the CPU BERT-vs-GPT pair
	RUN_COMMAND="make imdb-finetune-minilm-cpu-pilot$(ARGS_SUFFIX)" $(FT) configs/finetune_minilm_cpu_pilot.yaml $(ARGS)

imdb-finetune-smollm2-cpu:  ## SmolLM2-135M on the pilot's exact reviews, length and epochs (~35 min on 2 cores; resumable): the decoder half
	RUN_COMMAND="make imdb-finetune-smollm2-cpu$(ARGS_SUFFIX)" $(FT) configs/finetune_smollm2_cpu.yaml $(ARGS)

# Toward the 95 % top tier on the CPU (issue 30): the stronger pretrained model on all of IMDB, then
# an ensemble of pretrained and IMDB-only members, chosen on validation only.
#   make imdb-finetune-smollm2-cpu-tune    length, learning rate, LoRA vs full, pooling, on 2,000 reviews (~90 min)
#   make imdb-finetune-smollm2-cpu-full    the chosen recipe on all 22,500 train reviews, 25,000 test (3-4.5 h by machine; resumable)
#   make imdb-ensemble-pretrained          stacking over PRETRAINED_RUNS (seconds to minutes)
imdb-finetune-smollm2-cpu-tune:  ## SmolLM2-135M recipe search on validation (length, learning rate, LoRA vs full, pooling), test never read (~90 min) -> results/imdb-finetune-smollm2-cpu-tune.json
	RUN_COMMAND="make imdb-finetune-smollm2-cpu-tune$(ARGS_SUFFIX)" $(PY) scripts/tune_recipe.py configs/finetune_smollm2_cpu_tune.yaml $(ARGS)

imdb-finetune-smollm2-cpu-full:  ## SmolLM2-135M fine-tuned on all 22,500 train reviews, scored on all 25,000 test reviews (3-4.5 h on 2 cores: 0.33-0.53 s per review measured; resumable: rerun to continue) -> results/imdb-finetune-smollm2-cpu-full.json
	RUN_COMMAND="make imdb-finetune-smollm2-cpu-full$(ARGS_SUFFIX)" $(FT) configs/finetune_smollm2_cpu_full.yaml $(ARGS)

# Candidates: the two fine-tuned pretrained models and every IMDB-only candidate of make imdb-ensemble.
# Members with a refit on all of train (mk/nbsvm.mk REFITS) score test through it; the others score
# test themselves (member=member: retraining a 135M model on 25,000 reviews is another 3 h on 2 cores).
PRETRAINED_RUNS = imdb-finetune-minilm-cpu imdb-finetune-smollm2-cpu-full $(RUNS)
# $(call pretrained_refits,RUNS): REFITS, plus member=member for every run REFITS does not name.
pretrained_refits = $(REFITS) $(foreach r,$(filter-out $(foreach p,$(REFITS),$(firstword $(subst =, ,$(p)))),$(1)),$(r)=$(r))
# $(call pretrained_ensemble,RESULT_NAME,RUNS)
pretrained_ensemble = RUN_COMMAND="make $(1)$(ARGS_SUFFIX)" $(PY) scripts/ensemble.py --runs $(2) --select_members true \
	--refits $(call pretrained_refits,$(2)) --results_name $(1) $(ARGS)
imdb-ensemble-pretrained:  ## after imdb-finetune-smollm2-cpu-full: stacking of pretrained + IMDB-only members, chosen on validation -> results/imdb-ensemble-pretrained.json
	$(call pretrained_ensemble,imdb-ensemble-pretrained,$(PRETRAINED_RUNS))

imdb-ensemble-pretrained-minilm:  ## the same without SmolLM2 (its full run does not fit a 3-hour CPU sitting): MiniLM + the IMDB-only candidates -> results/imdb-ensemble-pretrained-minilm.json
	$(call pretrained_ensemble,imdb-ensemble-pretrained-minilm,$(filter-out imdb-finetune-smollm2-cpu-full,$(PRETRAINED_RUNS)))

imdb-finetune-minilm-cpu-precision-bench:  ## fp32 vs bf16 autocast, MiniLM training, same batches of 16 x 256 tokens (minutes) -> results/imdb-finetune-minilm-cpu-precision-bench.json
	RUN_COMMAND="make imdb-finetune-minilm-cpu-precision-bench$(ARGS_SUFFIX)" $(FT) configs/finetune_minilm_cpu_pilot.yaml \
		--benchmark_precision_steps 20 --benchmark_warmup_steps 3 --benchmark_only true --results_name imdb-finetune-minilm-cpu $(ARGS)

imdb-finetune-smollm2:  ## SmolLM2-135M-Instruct (GGUF from its PyPI package, offline) as a classifier -> results/imdb-finetune-smollm2.json
	RUN_COMMAND="make imdb-finetune-smollm2$(ARGS_SUFFIX)" $(FT) configs/finetune_smollm2.yaml $(ARGS)

imdb-bert-ddp:  ## imdb-bert on all GPUs of the machine (accelerate DDP; DeepSpeed: configs/accelerate/deepspeed_zero2.yaml)
	RUN_COMMAND="make imdb-bert-ddp$(ARGS_SUFFIX)" $(ACCEL) launch --config_file configs/accelerate/multi_gpu.yaml scripts/finetune_classifier.py configs/finetune_bert_base.yaml $(FT_MODEL_ARGS) $(ARGS)

gpu-finetune-prep:  ## pack MiniLM (int8), SmolLM2 (2 parts), IMDB and wheels into .carry/ft-* for gpu/finetune.sh
	bash gpu/finetune.sh prep
