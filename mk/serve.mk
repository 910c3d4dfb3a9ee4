# Serving: OpenAI-compatible API + web chat page (scripts/serve.py), decode and concurrent-serving benchmarks.
# make chatglm-serve MODEL=outputs/chatglm2-6b-native ARGS="--api_key KEY --compile"
# A request without temperature / top_p / max_tokens / repetition_penalty / no_repeat_ngram_size gets the model's
# generation defaults (as eval_chat.py and chat.py; the web page starts from them); ARGS="--repetition_penalty 1.1" etc. override.
HOST  ?= 127.0.0.1
PORT  ?= 8000

.PHONY: chatglm-serve chatglm-web bench-decode bench-serve bench-serve-faults bench-cpu-decode peer-setup browser

chatglm-serve:  ## OpenAI-compatible API on http://$(HOST):$(PORT)/v1 for MODEL (default outputs/chatglm2-6b-native; ARGS: --adapter DIR --api_key KEY --compile)
	RUN_COMMAND="make chatglm-serve$(ARGS_SUFFIX)" $(PY) scripts/serve.py --model_name_or_path $(call chatglm_model,outputs/chatglm2-6b-native) --host $(HOST) --port $(PORT) $(ARGS)

chatglm-web:  ## the same server, announcing the web chat page at http://$(HOST):$(PORT)/
	@echo "web chat: open http://$(HOST):$(PORT)/ in a browser (Ctrl+C stops the server)"
	RUN_COMMAND="make chatglm-web$(ARGS_SUFFIX)" $(PY) scripts/serve.py --model_name_or_path $(call chatglm_model,outputs/chatglm2-6b-native) --host $(HOST) --port $(PORT) --web true $(ARGS)

bench-decode:  ## batch-1 bf16 decode tokens/s, ChatGLM2-6B shape, random weights (GPU) -> results/decode-chatglm2-6b.json
	RUN_COMMAND="make bench-decode$(ARGS_SUFFIX)" $(PY) scripts/bench_decode.py $(ARGS)

bench-serve:  ## serve.py on 127.0.0.1 driven by the openai client at 1/4/16/64 concurrent clients (MODEL default packaged:smollm2) -> results/serve-<model>-<device>.json
	RUN_COMMAND="make bench-serve$(if $(filter command line environment,$(origin MODEL)), MODEL=$(MODEL))$(ARGS_SUFFIX)" $(PY) scripts/bench_serve.py --model_name_or_path $(call chatglm_model,packaged:smollm2) $(ARGS)

bench-serve-faults:  ## issue 53: serve.py on 127.0.0.1 with an API key under 43 bad requests, clients that leave and a 4,500-token prompt among running streams, ~5 min -> results/serve-faults-cpu.json
	RUN_COMMAND="make bench-serve-faults$(ARGS_SUFFIX)" $(PY) scripts/bench_serve_faults.py $(ARGS)

browser:  ## install Debian chromium for the headless web-page test (root/sudo)
	bash scripts/ci_install_browser.sh

bench-cpu-decode:  ## fp32 vs bf16 vs int4 decoding weights on a CPU: tokens/s for 1 and 16 requests, greedy tokens kept (MODEL default packaged:smollm2) -> results/decode-weights-smollm2-cpu.json
	RUN_COMMAND="make bench-cpu-decode$(if $(filter command line environment,$(origin MODEL)), MODEL=$(MODEL))$(ARGS_SUFFIX)" $(PY) scripts/bench_cpu_decode.py --model_name_or_path $(call chatglm_model,packaged:smollm2) $(ARGS)

peer-setup:  ## the optional llama.cpp peer for bench-serve ARGS="--peer llama.cpp": llama-cpp-python + its server, built from source (~10 min on 2 cores)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -c $(LOCK) -e '.[peer]'
