# BERT and GPT-2 built from config and pretrained on IMDB alone (scripts/run_scratch.py, docs/scratch.md).
# Each target runs both stages (pretrain -> classify); rerun it after an interruption and it resumes.
.PHONY: imdb-scratch-bert imdb-scratch-gpt imdb-scratch-bert-cpu imdb-scratch-gpt-cpu imdb-scratch-bert-tiny imdb-scratch-gpt-tiny imdb-scratch-bert-ddp imdb-scratch-gpt-ddp

imdb-scratch-bert: imdb-tokenizer  ## BERT from config: MLM on IMDB train+unsup, then classify (one GPU; resumable)
	RUN_COMMAND="make imdb-scratch-bert$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_bert.yaml $(ARGS)

imdb-scratch-gpt: imdb-tokenizer  ## GPT-2 from config: causal LM on IMDB train+unsup, then classify (one GPU; resumable)
	RUN_COMMAND="make imdb-scratch-gpt$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_gpt.yaml $(ARGS)

imdb-scratch-bert-ddp: imdb-tokenizer  ## imdb-scratch-bert on all GPUs with accelerate launch (DDP)
	RUN_COMMAND="make imdb-scratch-bert-ddp$(ARGS_SUFFIX)" $(ACCEL) launch --config_file configs/accelerate/multi_gpu.yaml scripts/run_scratch.py configs/scratch_bert.yaml $(ARGS)

imdb-scratch-gpt-ddp: imdb-tokenizer  ## imdb-scratch-gpt on all GPUs with accelerate launch (DDP)
	RUN_COMMAND="make imdb-scratch-gpt-ddp$(ARGS_SUFFIX)" $(ACCEL) launch --config_file configs/accelerate/multi_gpu.yaml scripts/run_scratch.py configs/scratch_gpt.yaml $(ARGS)

imdb-scratch-bert-cpu: imdb-tokenizer  ## BERT vs GPT on a CPU: small BERT, 1.6M tokens of MLM, 2k/2k-review subsets (configs/scratch_bert_cpu.yaml)
	RUN_COMMAND="make imdb-scratch-bert-cpu$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_bert_cpu.yaml $(ARGS)

imdb-scratch-gpt-cpu: imdb-tokenizer  ## the same with causal LM: the GPT side of the CPU comparison (configs/scratch_gpt_cpu.yaml)
	RUN_COMMAND="make imdb-scratch-gpt-cpu$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_gpt_cpu.yaml $(ARGS)

imdb-scratch-bert-tiny: imdb-tokenizer  ## smoke run of the BERT track on CPU (tiny model, a few hundred reviews)
	RUN_COMMAND="make imdb-scratch-bert-tiny$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_bert_tiny.yaml $(ARGS)

imdb-scratch-gpt-tiny: imdb-tokenizer  ## smoke run of the GPT-2 track on CPU (tiny model, a few hundred reviews)
	RUN_COMMAND="make imdb-scratch-gpt-tiny$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_gpt_tiny.yaml $(ARGS)
