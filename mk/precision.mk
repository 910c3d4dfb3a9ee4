# bf16 autocast vs fp32 on this machine, model by model: the same initial weights and the same batches
# timed both ways (imdb_llm.benchmark). Each writes results/<name>-precision-bench.json with both
# samples/s figures, the ratio and native_bf16; a recipe sets mixed_precision: auto only where the
# ratio is above 1. (MiniLM has its own: make imdb-finetune-minilm-cpu-precision-bench.)
PRECISION_BENCH = --benchmark_precision_steps 20 --benchmark_warmup_steps 3 --benchmark_only true
.PHONY: precision-benches

precision-benches: imdb-tokenizer  ## fp32 vs bf16 autocast for TextCNN, BiLSTM and the CPU-scale scratch BERT/GPT (minutes) -> results/*-precision-bench.json
	RUN_COMMAND="make precision-benches$(ARGS_SUFFIX)" $(PY) scripts/train_textclf.py configs/imdb_textcnn.yaml $(PRECISION_BENCH) $(ARGS)
	RUN_COMMAND="make precision-benches$(ARGS_SUFFIX)" $(PY) scripts/train_textclf.py configs/imdb_lstm.yaml $(PRECISION_BENCH) $(ARGS)
	RUN_COMMAND="make precision-benches$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_bert_cpu.yaml $(PRECISION_BENCH) $(ARGS)
	RUN_COMMAND="make precision-benches$(ARGS_SUFFIX)" $(PY) scripts/run_scratch.py configs/scratch_gpt_cpu.yaml $(PRECISION_BENCH) $(ARGS)
