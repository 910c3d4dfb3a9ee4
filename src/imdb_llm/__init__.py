"""Shared code for the IMDB -> LLM pipeline."""
