"""Shared fixtures. The suite is offline: hub lookups must fail fast, never hang."""

import os
import sys
from pathlib import Path

import pytest

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("PYTHONUNBUFFERED", "1")  # scripts the tests run inherit all of these

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
PYTHON = sys.executable


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    """A small IMDB sample in the hub Parquet layout (see tests/fixtures/imdb/README.md)."""
    return FIXTURES / "imdb"


@pytest.fixture(scope="session")
def imdb_tokenizer(tmp_path_factory, imdb_dir) -> Path:
    """A tiny WordPiece tokenizer trained on the fixture's train + unsupervised text."""
    from imdb_llm.imdb.data import load_imdb, pretraining_texts
    from imdb_llm.imdb.tokenization import train_wordpiece

    out = tmp_path_factory.mktemp("tokenizer")
    dsets = load_imdb(dataset_dir=str(imdb_dir), with_unsupervised=True)
    train_wordpiece(pretraining_texts(dsets)["text"], vocab_size=2000).save_pretrained(out)
    return out
