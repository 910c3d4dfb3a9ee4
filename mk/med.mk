# The medical assistant of issue 48: Gemma 3 270M + retrieved knowledge + safety rules, measured without a judge model.
MED_MODEL   ?= outputs/med-expert
MED_BASE    ?= packaged:gemma3
MED_RATING  ?= data/med_rating
MED_TRAIN_ARGS ?=
MED_SHIPPED ?= models/med-expert-gemma3
# What a chat needs of a trained adapter folder (the tokenizer comes from packaged:gemma3).
MED_SHIP_FILES = adapter_config.json adapter_model.safetensors chat_template.jinja generation_defaults.json retrieval_index.jsonl

.PHONY: med-expert-cpu med-expert-cpu-train med-expert-pref-cpu-train med-expert-cpu-eval med-measures med-rate med-rate-score med-chat med-ship

med-expert-cpu-train:  ## issue 48: LoRA on Gemma 3 270M, cleaned records, 2 retrieved records per prompt; checkpoint chosen by answer matching on carved records (resumable) -> outputs/med-expert
	RUN_COMMAND="make med-expert-cpu-train$(call args_suffix,MED_TRAIN_ARGS)" $(PY) scripts/sft_qlora.py configs/gemma3_med_expert_cpu.yaml $(MED_TRAIN_ARGS)

med-expert-pref-cpu-train:  ## issue 48: the shipped adapter trained further on near-miss preference pairs (CPO-SimPO), checkpoint chosen by answer matching on carved records (resumable) -> outputs/med-expert-pref
	RUN_COMMAND="make med-expert-pref-cpu-train$(call args_suffix,MED_TRAIN_ARGS)" $(PY) scripts/sft_qlora.py configs/gemma3_med_expert_pref_cpu.yaml $(MED_TRAIN_ARGS)

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

med-ship:  ## copy the trained adapter, its template, decoding defaults and retrieval index from $(MED_MODEL) into $(MED_SHIPPED) (committed: make med-chat then needs no training)
	@for f in $(MED_SHIP_FILES); do test -f $(MED_MODEL)/$$f || { echo "error: $(MED_MODEL)/$$f is missing: run make med-expert-cpu-train first" >&2; exit 2; }; done
	mkdir -p $(MED_SHIPPED) && for f in $(MED_SHIP_FILES); do cp $(MED_MODEL)/$$f $(MED_SHIPPED)/; done

med-chat:  ## chat in the terminal with the shipped medical assistant: Gemma 3 270M + the adapter in $(MED_SHIPPED), retrieval and safety rules (no training needed)
	@test -f $(MED_SHIPPED)/adapter_model.safetensors || { echo "error: $(MED_SHIPPED) holds no adapter yet: make med-expert-cpu-train && make med-ship" >&2; exit 2; }
	$(PY) scripts/chat.py --model_name_or_path packaged:gemma3 --adapter $(MED_SHIPPED) --dtype bfloat16 $(ARGS)
