"""IMDB sentiment track: data, tokenization, models, NBSVM, pretraining, fine-tuning, ensembles."""
