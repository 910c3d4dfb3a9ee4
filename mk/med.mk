# The medical assistant of issue 48: Gemma 3 270M + retrieved knowledge + safety rules, measured without a judge model.
MED_MODEL   ?= outputs/med-expert
MED_BASE    ?= packaged:gemma3
MED_RATING  ?= data/med_rating
MED_TRAIN_ARGS ?=

.PHONY: med-expert-cpu med-expert-cpu-train med-expert-cpu-eval med-measures med-rate med-rate-score med-chat

med-expert-cpu-train:  ## issue 48: LoRA on Gemma 3 270M, cleaned records, 2 retrieved records per prompt; checkpoint chosen by answer matching on carved records (resumable) -> outputs/med-expert
	RUN_COMMAND="make med-expert-cpu-train$(call args_suffix,MED_TRAIN_ARGS)" $(PY) scripts/sft_qlora.py configs/gemma3_med_expert_cpu.yaml $(MED_TRAIN_ARGS)

med-expert-cpu-eval:  ## issue 48: answer matching, safety sets, invented names, ROUGE on the 500 judged records, base beside it -> results/med-expert-cpu.json
	RUN_COMMAND="make med-expert-cpu-eval$(ARGS_SUFFIX)" $(PY) scripts/med_eval.py --model_name_or_path $(MED_BASE) --adapter $(MED_MODEL) \
		--base_model $(MED_BASE) --chat_template gemma --training_summary $(MED_MODEL)/sft_results.json --results_name med-expert-cpu $(ARGS)

med-expert-cpu: med-expert-cpu-train med-expert-cpu-eval  ## issue 48: train, then measure (both steps above)

med-measures:  ## the measures of issue 48 on any model (MODEL=packaged:smollm2 ARGS="--retrieval_k 2 --results_name ..."), or on a predictions file (ARGS="--predictions_file F.jsonl:tuned ...")
	RUN_COMMAND="make med-measures$(call args_suffix,MODEL)$(ARGS_SUFFIX)" $(PY) scripts/med_eval.py $(if $(MODEL),--model_name_or_path $(MODEL)) $(ARGS)

med-rate:  ## blind rating sheet: answers of two result files' predictions, shuffled, unlabelled -> $(MED_RATING)/sheet.csv + key.json
	$(PY) scripts/med_rate.py make --output_dir $(MED_RATING) $(ARGS)

med-rate-score:  ## score a filled sheet: each system's rates with 95 % intervals -> $(MED_RATING)/scores.json
	$(PY) scripts/med_rate.py score --output_dir $(MED_RATING) $(ARGS)
