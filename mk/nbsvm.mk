# No pretrained weights (issue 15): NBSVM on n-grams, and ensembles of saved probabilities.
#   make imdb-nbsvm                                   # NB-weighted LR on binary 1-3-grams -> results/imdb-nbsvm.json
#   make imdb-pvdbow                                  # PV-DBOW paragraph vectors + LR -> results/imdb-pvdbow.json
#   make imdb-textcnn-s43 imdb-lstm-s43               # second seeds of the two neural members: more ensemble candidates
#   make imdb-lstm-lminit                             # BiLSTM initialised from an LSTM LM pretrained on IMDB text (~55 + 15 min)
#   make imdb-lm-bayes                                # one LM per class from that LM, Bayes' rule decides (~40 min)
#   make imdb-nbsvm-full imdb-textcnn-full imdb-lstm-full imdb-lstm-s43-full   # the kept members retrained on all 25k train reviews
#   make imdb-ensemble                                # candidates RUNS, subset and weights chosen on validation only, test scored by the refits
#   make nbsvm-docs                                   # docs/nbsvm.md tables and examples from the saved files
.PHONY: imdb-nbsvm imdb-pvdbow imdb-textcnn-s43 imdb-lstm-s43 imdb-lstm-lm imdb-lstm-lminit imdb-lm-bayes imdb-nbsvm-full imdb-textcnn-full imdb-lstm-full imdb-lstm-s43-full imdb-ensemble nbsvm-docs

RUNS ?= imdb-nbsvm imdb-textcnn imdb-lstm imdb-pvdbow imdb-textcnn-s43 imdb-lstm-s43 imdb-lstm-lminit imdb-lm-bayes
ENSEMBLE_NAME ?= imdb-ensemble-nopretrain
SELECT ?= true   # keep the subset of RUNS with the best cross-validated validation accuracy (SELECT=false: all of them)
# Members kept by validation score test through their refits (below); REFITS= (empty): through themselves.
REFITS ?= imdb-nbsvm=imdb-nbsvm-full imdb-textcnn=imdb-textcnn-full imdb-lstm=imdb-lstm-full imdb-lstm-s43=imdb-lstm-s43-full

imdb-nbsvm:  ## NBSVM: NB-weighted logistic regression on binary 1-3-grams, CPU, minutes -> results/imdb-nbsvm.json
	RUN_COMMAND="make imdb-nbsvm$(ARGS_SUFFIX)" $(PY) scripts/train_nbsvm.py configs/imdb_nbsvm.yaml $(ARGS)

imdb-pvdbow:  ## PV-DBOW paragraph vectors (words + bigrams, train + unlabelled text only) + LR, CPU, ~1 h on one core -> results/imdb-pvdbow.json
	RUN_COMMAND="make imdb-pvdbow$(ARGS_SUFFIX)" $(PY) scripts/train_pvdbow.py configs/imdb_pvdbow.yaml $(ARGS)

# The same recipes with another training seed (same validation split): seeds err differently, and
# averaging them is the cheapest ensemble gain; the selection below keeps them only if validation says so.
imdb-textcnn-s43:  ## TextCNN, training seed 43: an ensemble candidate (~16 min in bf16 on 2 cores) -> results/imdb-textcnn-s43.json
	$(MAKE) imdb-textcnn ARGS="--seed 43 --output_dir outputs/imdb-textcnn-s43 --results_name imdb-textcnn-s43"

imdb-lstm-s43:  ## BiLSTM, training seed 43: an ensemble candidate (~15 min in bf16 on 2 cores) -> results/imdb-lstm-s43.json
	$(MAKE) imdb-lstm ARGS="--seed 43 --output_dir outputs/imdb-lstm-s43 --results_name imdb-lstm-s43"

# Pretraining on IMDB's own text (Dai & Le 2015's SA-LSTM, ELMo's two directions): a sequence model
# that has read 70k reviews before it sees a label, the member most unlike the n-gram ones.
imdb-lstm-lm:  ## forward + backward LSTM LM on IMDB train+unsup text (needs make imdb-word2vec), resumable (~55 min on 2 cores) -> outputs/imdb-lstm-lm, results/imdb-lstm-lm.json
	RUN_COMMAND="make imdb-lstm-lm$(ARGS_SUFFIX)" $(PY) scripts/pretrain_lstm_lm.py configs/imdb_lstm_lm.yaml $(ARGS)

imdb-lstm-lminit:  ## after imdb-lstm-lm: the BiLSTM recipe started from that LM instead of word2vec (~15 min on 2 cores) -> results/imdb-lstm-lminit.json
	RUN_COMMAND="make imdb-lstm-lminit$(ARGS_SUFFIX)" $(PY) scripts/train_textclf.py configs/imdb_lstm_lminit.yaml $(ARGS)

# A generative classifier (Mesnil et al. 2014's RNN-LM member): no classifier head at all, one LM
# per class and Bayes' rule. It reads every word in order, unlike any other member.
imdb-lm-bayes:  ## after imdb-lstm-lm: that LM fine-tuned on the negative and on the positive reviews; the likelier class wins, resumable (~40 min on 2 cores) -> results/imdb-lm-bayes.json
	RUN_COMMAND="make imdb-lm-bayes$(ARGS_SUFFIX)" $(PY) scripts/train_lm_bayes.py configs/imdb_lm_bayes.yaml $(ARGS)

# Refit on all 25,000 training reviews (scikit-learn's StackingClassifier recipe): the ensemble's
# weights are fit on validation scores of members that never saw validation; the members that score
# test are then the same recipes retrained on train + validation, the epoch count (or NBSVM's grid
# point) being the one validation chose for the original run (a test in tests/test_nbsvm.py checks
# these numbers against results/<run>.json). Run the four before make imdb-ensemble (REFITS above).
REFIT = --validation_ratio 0 --eval_strategy no --load_best_model_at_end false
imdb-nbsvm-full:  ## NBSVM at the grid point validation chose, fit on all 25k train reviews (minutes) -> results/imdb-nbsvm-full.json
	$(MAKE) imdb-nbsvm ARGS="--validation_ratio 0 --ngram_max 3 --min_df 2 --C 1.0 --output_dir outputs/imdb-nbsvm-full --results_name imdb-nbsvm-full"
imdb-textcnn-full:  ## TextCNN, 5 epochs (its best on validation), all 25k train reviews (~15 min in bf16) -> results/imdb-textcnn-full.json
	$(MAKE) imdb-textcnn ARGS="$(REFIT) --num_train_epochs 5 --output_dir outputs/imdb-textcnn-full --results_name imdb-textcnn-full"
imdb-lstm-full:  ## BiLSTM, 4 epochs (its best on validation), all 25k train reviews (~16 min in bf16) -> results/imdb-lstm-full.json
	$(MAKE) imdb-lstm ARGS="$(REFIT) --num_train_epochs 4 --output_dir outputs/imdb-lstm-full --results_name imdb-lstm-full"
imdb-lstm-s43-full:  ## BiLSTM seed 43, 3 epochs (its best on validation), all 25k train reviews (~12 min in bf16) -> results/imdb-lstm-s43-full.json
	$(MAKE) imdb-lstm ARGS="$(REFIT) --seed 43 --num_train_epochs 3 --output_dir outputs/imdb-lstm-s43-full --results_name imdb-lstm-s43-full"

imdb-ensemble:  ## ensemble of RUNS="a b ..." from results/<run>.probs.parquet, members and weights chosen on validation -> results/$(ENSEMBLE_NAME).json
	RUN_COMMAND="make imdb-ensemble RUNS='$(RUNS)' REFITS='$(strip $(REFITS))'$(if $(filter command line environment,$(origin ENSEMBLE_NAME)), ENSEMBLE_NAME=$(ENSEMBLE_NAME))$(if $(filter command line environment,$(origin SELECT)), SELECT=$(SELECT))$(ARGS_SUFFIX)" \
		$(PY) scripts/ensemble.py --runs $(RUNS) --select_members $(strip $(SELECT)) $(if $(strip $(REFITS)),--refits $(REFITS)) --results_name $(ENSEMBLE_NAME) $(ARGS)

nbsvm-docs:  ## regenerate docs/nbsvm.md's disagreement table and examples from results/*.probs.parquet
	$(PY) scripts/nbsvm_report.py $(ARGS)
