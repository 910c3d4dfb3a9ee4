"""Small classifiers as real transformers models: ``PreTrainedModel`` + ``PretrainedConfig``,
registered with the Auto classes so ``Trainer``, ``save_pretrained``/``from_pretrained`` and
``AutoModelForSequenceClassification.from_pretrained(dir)`` work as for any hub model."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from imdb_llm.imdb.models.lstm import BiLSTMConfig, BiLSTMForSequenceClassification
from imdb_llm.imdb.models.lstm_lm import BiLSTMLanguageModel, BiLSTMLMConfig
from imdb_llm.imdb.models.textcnn import TextCNNConfig, TextCNNForSequenceClassification

for _config, _model in ((TextCNNConfig, TextCNNForSequenceClassification), (BiLSTMConfig, BiLSTMForSequenceClassification)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForSequenceClassification.register(_config, _model, exist_ok=True)

AutoConfig.register(BiLSTMLMConfig.model_type, BiLSTMLMConfig, exist_ok=True)

__all__ = ["BiLSTMLMConfig", "BiLSTMLanguageModel", "TextCNNConfig", "TextCNNForSequenceClassification", "BiLSTMConfig", "BiLSTMForSequenceClassification"]
