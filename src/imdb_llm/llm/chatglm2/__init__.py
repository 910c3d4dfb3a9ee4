"""ChatGLM2-6B on native transformers: the model shape, checkpoint conversion and the tokenizer."""
