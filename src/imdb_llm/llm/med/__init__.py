"""The Chinese medical assistant's own concerns, beside the generic SFT path (:mod:`imdb_llm.llm.sft`):

* :mod:`.clean` - which records are not fit to learn from (corrupt ages, answers copied from the question);
* :mod:`.retrieval` - a BM25 index of the training records, put into the prompt (knowledge-tuning);
* :mod:`.answer_match` - does the model prefer the right answer over near misses (no judge model);
* :mod:`.entities` - disease, drug and test names an answer invents;
* :mod:`.safety` - the hand-written safety set and its scoring; :mod:`.rules` - the red-flag rules
  that evaluation, chat and serving all apply;
* :mod:`.rating` - blind rating sheets for a person, and their scores.
"""
