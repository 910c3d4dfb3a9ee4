# QLoRA fine-tuning (issue 7): ChatGLM2-6B medical assistant, the same path on SmolLM2 offline, eval, merge, speed.
CHATGLM_BASE    ?= outputs/chatglm2-6b-native
CHATGLM_ADAPTER ?= outputs/chatglm2-6b-qlora-med
CHATGLM_MERGED  ?= outputs/chatglm2-6b-med-merged

.PHONY: chatglm-qlora chatglm-eval chatglm-merge qlora-smollm2 lora-smollm2-med med-expert-smollm2-cpu med-expert-smollm2-cpu-tune bench-qlora

# What chatglm-qlora needs, said before anything loads (ALLOW_CPU=1 skips the GPU check).
CHATGLM_NEEDS = chatglm-qlora trains ChatGLM2-6B in 4 bits: it needs a CUDA GPU and the converted weights in $(CHATGLM_BASE) (make chatglm-convert).
CHATGLM_HERE  = On this machine, the same script on SmolLM2-135M: make med-expert-smollm2-cpu (CPU, ~3 h, resumable) or the 4-bit smoke run make qlora-smollm2.

chatglm-qlora:  ## QLoRA ChatGLM2-6B on data/bentsao_med_zh (GPU; resumable; multi-GPU: see configs/chatglm2-6b_qlora_med.yaml)
	@test -n "$(ALLOW_CPU)" || $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || \
		{ echo "error: no CUDA GPU here. $(CHATGLM_NEEDS) $(CHATGLM_HERE)" >&2; exit 2; }
	@test -d $(CHATGLM_BASE) || case "$(ARGS)" in *--model_name_or_path*) ;; *) \
		echo "error: $(CHATGLM_BASE) is missing. $(CHATGLM_NEEDS) $(CHATGLM_HERE)" >&2; exit 2;; esac
	RUN_COMMAND="make chatglm-qlora$(ARGS_SUFFIX)" $(PY) scripts/sft_qlora.py configs/chatglm2-6b_qlora_med.yaml $(ARGS)

chatglm-eval:  ## ROUGE-1/2/L + BLEU-4 on validation, base vs base+adapter -> results/chatglm2-6b-qlora-med-eval.json + predictions
	RUN_COMMAND="make chatglm-eval$(ARGS_SUFFIX)" $(PY) scripts/eval_chat.py --model_name_or_path $(CHATGLM_BASE) --adapter $(CHATGLM_ADAPTER) \
		--load_in_4bit true --max_eval_samples 200 --results_name chatglm2-6b-qlora-med-eval $(ARGS)

chatglm-merge:  ## fold the adapter into bf16 weights -> $(CHATGLM_MERGED) (loadable by chat and serve)
	RUN_COMMAND="make chatglm-merge$(ARGS_SUFFIX)" $(PY) scripts/merge_adapter.py --model_name_or_path $(CHATGLM_BASE) --adapter $(CHATGLM_ADAPTER) \
		--output_dir $(CHATGLM_MERGED) --dtype bfloat16 $(ARGS)

qlora-smollm2:  ## same QLoRA script on SmolLM2-135M (offline, CPU ~20 min) -> results/qlora-smollm2-med.json
	RUN_COMMAND="make qlora-smollm2$(ARGS_SUFFIX)" $(PY) scripts/sft_qlora.py configs/smollm2_qlora_med.yaml $(ARGS)

lora-smollm2-med:  ## the first CPU-scale run, kept as the loop baseline of issue 31: LoRA r=8 on 4,000+ medical records, greedy, 300 judged answers (~1-1.5 h on 2 cores; resumable) -> results/lora-smollm2-med.json
	RUN_COMMAND="make lora-smollm2-med$(ARGS_SUFFIX)" $(PY) scripts/sft_qlora.py configs/smollm2_lora_med_cpu.yaml $(ARGS)

med-expert-smollm2-cpu-tune:  ## issue 31: LoRA r=32 vs every weight (one or two epochs) on 2,000 records, the carved validation loss decides (~2 h; the 500 judged never read) -> results/med-expert-smollm2-cpu-tune.json
	RUN_COMMAND="make med-expert-smollm2-cpu-tune$(ARGS_SUFFIX)" $(PY) scripts/tune_recipe.py configs/smollm2_med_expert_cpu_tune.yaml $(ARGS)

med-expert-smollm2-cpu:  ## issue 31: SmolLM2-135M, every weight, on all medical train records, checkpoint + decoding chosen on a carved validation, 500 judged (2.9 h measured on 2 AMD EPYC cores: two epochs; resumable) -> results/med-expert-smollm2-cpu.json
	RUN_COMMAND="make med-expert-smollm2-cpu$(ARGS_SUFFIX)" $(PY) scripts/sft_qlora.py configs/smollm2_med_expert_cpu.yaml $(ARGS)

bench-qlora:  ## QLoRA speed/memory, ChatGLM2-6B shape, random weights, 4x1024, r=8 (GPU) -> results/qlora-chatglm2-6b-speed.json
	RUN_COMMAND="make bench-qlora$(ARGS_SUFFIX)" $(PY) scripts/bench_qlora.py --results_name qlora-chatglm2-6b-speed $(ARGS)
