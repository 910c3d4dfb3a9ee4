"""OpenAI-compatible serving: wire types, the API server, the engine, its scheduler, the padded batch and the sampler."""
