# ChatGLM2-6B on native transformers (issue 5): convert the official checkpoint, then chat with it.
#   make chatglm-convert                                  # THUDM/chatglm2-6b from the hub (needs network)
#   make chatglm-convert MODEL=/data/chatglm2-6b OUTPUT=outputs/chatglm2-6b-native ARGS="--dtype bfloat16"
#   make chatglm-chat                                     # outputs/chatglm2-6b-native
#   make chatglm-chat MODEL=packaged:smollm2 ARGS="--do_sample false --repetition_penalty 1.1"
#   make chatglm-chat MODEL=packaged:smollm2 ARGS="--adapter outputs/smollm2-med-expert"   # decodes as it was judged
# Decoding: the model's generation defaults (an adapter's generation_defaults.json from sft_qlora.py, else the
# model's own generation_config.json), the same as eval_chat.py and serve.py; flags in ARGS override them.
.PHONY: chatglm-convert chatglm-chat

# MODEL is shared by every track's targets, so each uses it only when given on the command line or
# in the environment, else its own default (chatglm_model is used by mk/serve.mk too).
chatglm_model = $(if $(filter command line environment,$(origin MODEL)),$(MODEL),$(1))
chatglm_output = $(if $(filter command line environment,$(origin OUTPUT)),$(OUTPUT),outputs/chatglm2-6b-native)


chatglm-convert:  ## official ChatGLM2 checkpoint (MODEL= folder or hub id, default THUDM/chatglm2-6b) -> native folder OUTPUT=
	RUN_COMMAND="make chatglm-convert$(ARGS_SUFFIX)" $(PY) scripts/convert_chatglm2.py --input $(call chatglm_model,THUDM/chatglm2-6b) --output $(chatglm_output) $(ARGS)

chatglm-chat:  ## streaming multi-turn chat in the terminal (MODEL= native folder, hub id or packaged:smollm2)
	RUN_COMMAND="make chatglm-chat$(ARGS_SUFFIX)" $(PY) scripts/chat.py --model_name_or_path $(call chatglm_model,outputs/chatglm2-6b-native) $(ARGS)
