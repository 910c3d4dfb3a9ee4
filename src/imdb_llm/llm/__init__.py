"""LLM track: loading causal LMs, chat, the prompt registry, ChatGLM2 conversion and supervised fine-tuning."""
