"""The one IMDB loader every track uses.

Sources are tried in this order:

1. ``dataset_dir`` (or the ``IMDB_DIR`` environment variable) pointing at
   a. a Parquet folder in the hub layout (``train-*.parquet``, ``test-*.parquet``,
      ``unsupervised-*.parquet``, optionally under ``plain_text/``), e.g. ``../shared/data/imdb``;
   b. the official ``aclImdb/`` folder (``train/pos/*.txt`` ...);
   c. the official ``aclImdb_v1.tar.gz`` (read in place, never extracted to disk);
2. the hub dataset ``stanfordnlp/imdb``;
3. otherwise one clear error that says how to get the data offline.

Every split is checked (``text``/``label`` columns, labels in {0, 1}, no empty text) and cleaned
(``<br />`` becomes a newline). Validation is carved from train, label-stratified and seeded;
test is left untouched and is meant for the final number only.

``train``/``validation``/``test`` rows carry an ``id``: the review's index in its source split
(validation rows keep their train index). It is the key that lines up saved probabilities of
different runs (imdb_llm.probs); adding it does not move the split, which depends on labels only.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from imdb_llm.cli import UserError

HUB_ID = "stanfordnlp/imdb"
LABEL_NAMES = ["neg", "pos"]
SPLITS = ("train", "test", "unsupervised")
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_OFFLINE_HELP = (
    "point --dataset_dir (or IMDB_DIR) at a Parquet folder in the hub layout (e.g. ../shared/data/imdb), "
    "an aclImdb/ folder or aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/"
)


class DataError(UserError):
    """Bad or missing data: one line naming the file and the problem."""


@dataclass
class ImdbArguments:
    """Where IMDB comes from and how it is split. Shared by every IMDB script."""

    dataset_dir: str | None = field(
        default=None,
        metadata={"help": "Parquet folder (hub layout), aclImdb/ folder or aclImdb_v1.tar.gz. Default: $IMDB_DIR, then the hub."},
    )
    validation_ratio: float = field(default=0.1, metadata={"help": "Fraction of train held out (stratified) for validation."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the train/validation split and of subsampling."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (after the split) for smoke runs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation for smoke runs."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Evaluate on a seeded, stratified test subset."})
    max_unsupervised_samples: int | None = field(default=None, metadata={"help": "Truncate the unsupervised split."})
    tokenized_cache_dir: str | None = field(
        default=None, metadata={"help": "Where tokenised splits are kept so a rerun skips tokenisation (default: cache/tokenized beside output_dir; none: off)."}
    )


def clean_text(text: str) -> str:
    return _BR_RE.sub("\n", text).strip()


def load_imdb(args: ImdbArguments | None = None, with_unsupervised: bool = False, **overrides):
    """Return a ``DatasetDict`` with ``train``, ``validation``, ``test`` (and ``unsupervised``)."""
    import datasets

    args = args or ImdbArguments()
    for key, value in overrides.items():
        setattr(args, key, value)
    if not 0.0 <= args.validation_ratio < 1.0:
        raise DataError(f"--validation_ratio must be in [0, 1), got {args.validation_ratio}")

    wanted = ["train", "test"] + (["unsupervised"] if with_unsupervised else [])
    tables = read_raw_splits(args.dataset_dir or os.environ.get("IMDB_DIR"), wanted)

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=LABEL_NAMES), "id": datasets.Value("int32")}
    )
    out = {}
    for split in ("train", "test"):
        texts, labels, source = tables[split]
        _check_split(texts, labels, source, split)
        columns = {"text": [clean_text(t) for t in texts], "label": labels, "id": list(range(len(texts)))}
        out[split] = datasets.Dataset.from_dict(columns, features=features)

    if args.validation_ratio > 0:
        parts = out["train"].train_test_split(test_size=args.validation_ratio, stratify_by_column="label", seed=args.split_seed)
        out["train"], out["validation"] = parts["train"], parts["test"]
    else:
        out["validation"] = out["train"].select([])
    out["train"] = _subsample(out["train"], args.max_train_samples, args.split_seed)
    out["validation"] = _subsample(out["validation"], args.max_eval_samples, args.split_seed)
    out["test"] = _subsample(out["test"], args.max_test_samples, args.split_seed)

    if with_unsupervised:
        texts, labels, source = tables["unsupervised"]
        _check_split(texts, labels, source, "unsupervised")
        unsup = datasets.Dataset.from_dict({"text": [clean_text(t) for t in texts], "id": list(range(len(texts)))},
                                           features=datasets.Features({"text": datasets.Value("string"), "id": datasets.Value("int32")}))
        if args.max_unsupervised_samples is not None:
            unsup = unsup.shuffle(seed=args.split_seed).select(range(min(args.max_unsupervised_samples, len(unsup))))
        out["unsupervised"] = unsup
    return datasets.DatasetDict(out)


def pretraining_texts(dsets, drop_texts_of: tuple[str, ...] = ()) -> "datasets.Dataset":
    """Train (minus validation) plus unsupervised text: everything a self-supervised stage may see.

    ``drop_texts_of=("validation", "test")`` also leaves out every review whose text is identical to
    one in those splits: IMDB as distributed repeats some reviews across splits (270 unsupervised and
    123 train reviews are word for word test reviews), and a held-out review must not be read by
    any training stage, even under another id."""
    import datasets

    parts = [dsets["train"].select_columns(["text"])]
    if "unsupervised" in dsets:
        parts.append(dsets["unsupervised"].select_columns(["text"]))
    return drop_texts_in(datasets.concatenate_datasets(parts), dsets, drop_texts_of)


def drop_texts_in(dataset, dsets, splits: tuple[str, ...]):
    """``dataset`` without the rows whose text also appears in any of ``dsets[split]``."""
    held_out = {text for split in splits for text in dsets[split]["text"]}
    keep = [i for i, text in enumerate(dataset["text"]) if text not in held_out]
    # select() by index (not filter with a closure): the same rows get the same fingerprint in every
    # process, so tokenised caches keyed on it are found again.
    return dataset if len(keep) == len(dataset) else dataset.select(keep)


def _subsample(ds, n: int | None, seed: int):
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise DataError(f"sample limits must be positive, got {n}")
    if n >= 2 and len(set(ds["label"])) > 1:
        # Stratified, so a 200-review smoke run still sees both classes.
        frac = n / len(ds)
        return ds.train_test_split(train_size=frac, stratify_by_column="label", seed=seed)["train"]
    return ds.shuffle(seed=seed).select(range(n))


def _check_split(texts: list, labels: list, source: str, split: str) -> None:
    if not texts:
        raise DataError(f"{source}: split '{split}' is empty")
    allowed = {-1} if split == "unsupervised" else {0, 1}
    bad = [label for label in labels if label not in allowed]
    if bad:
        raise DataError(f"{source}: label {bad[0]!r} outside {sorted(allowed)} in split '{split}'")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source}: empty text in row {i} of split '{split}'")


# --------------------------------------------------------------------------------------- sources


def read_raw_splits(location: str | None, splits: Iterable[str]) -> dict[str, tuple[list, list, str]]:
    """``{split: (texts, labels, source_name)}`` from the first source that exists."""
    splits = list(splits)
    if location:
        path = Path(location).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or directory ({_OFFLINE_HELP})")
        if path.is_file():
            if path.name.endswith((".tar.gz", ".tgz", ".tar")):
                return _read_tarball(path, splits)
            raise DataError(f"{path}: not a Parquet folder, aclImdb/ folder or .tar.gz")
        if (path / "aclImdb").is_dir():
            path = path / "aclImdb"
        if (path / "train" / "pos").is_dir():
            return _read_acl_folder(path, splits)
        return _read_parquet_folder(path, splits)
    return _read_hub(splits)


def _read_parquet_folder(folder: Path, splits: list[str]) -> dict:
    import pyarrow.parquet as pq

    out = {}
    for split in splits:
        files = sorted(folder.glob(f"{split}-*.parquet")) or sorted(folder.glob(f"plain_text/{split}-*.parquet")) or sorted(folder.glob(f"{split}.parquet"))
        if not files:
            raise DataError(f"{folder}: no {split}-*.parquet file ({_OFFLINE_HELP})")
        texts, labels = [], []
        for file in files:
            try:
                table = pq.read_table(file)
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError on corrupt files
                raise DataError(f"{file}: cannot read Parquet ({str(exc).splitlines()[0]})") from exc
            missing = [c for c in ("text", "label") if c not in table.column_names]
            if missing:
                raise DataError(f"{file}: missing column(s) {', '.join(missing)}")
            texts += table.column("text").to_pylist()
            labels += table.column("label").to_pylist()
        out[split] = (texts, labels, str(files[0]) if len(files) == 1 else str(folder))
    return out


def _read_acl_folder(root: Path, splits: list[str]) -> dict:
    out = {}
    for split in splits:
        sub, labelled = ("train", [("unsup", -1)]) if split == "unsupervised" else (split, [("neg", 0), ("pos", 1)])
        texts, labels = [], []
        for name, label in labelled:
            folder = root / sub / name
            if not folder.is_dir():
                raise DataError(f"{folder}: missing folder of the aclImdb layout")
            for file in sorted(folder.glob("*.txt"), key=_review_sort_key):
                texts.append(_decode(file.read_bytes(), file))
                labels.append(label)
        out[split] = (texts, labels, str(root / sub))
    return out


def _read_tarball(path: Path, splits: list[str]) -> dict:
    wanted = {"train": [("train/neg/", 0), ("train/pos/", 1)], "test": [("test/neg/", 0), ("test/pos/", 1)], "unsupervised": [("train/unsup/", -1)]}
    found: dict[str, list[tuple[str, str, int]]] = {s: [] for s in splits}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".txt"):
                    continue
                rel = member.name.split("aclImdb/", 1)[-1]
                for split in splits:
                    for prefix, label in wanted[split]:
                        if rel.startswith(prefix) and rel.count("/") == 2:
                            data = tar.extractfile(member).read()
                            found[split].append((rel, _decode(data, f"{path}:{member.name}"), label))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt or unreadable tarball ({str(exc).splitlines()[0].rstrip(':')})") from exc
    out = {}
    for split in splits:
        rows = sorted(found[split], key=lambda r: (r[2], _review_sort_key(Path(r[0]))))
        if not rows:
            raise DataError(f"{path}: no aclImdb {split} reviews inside")
        out[split] = ([r[1] for r in rows], [r[2] for r in rows], str(path))
    return out


def _read_hub(splits: list[str]) -> dict:
    try:
        import datasets

        ds = datasets.load_dataset(HUB_ID)
    except Exception as exc:
        raise DataError(f"IMDB not found locally and the hub dataset {HUB_ID} is unreachable ({type(exc).__name__}); {_OFFLINE_HELP}") from exc
    return {s: (ds[s]["text"], ds[s]["label"], f"hub:{HUB_ID}/{s}") for s in splits}


def _decode(data: bytes, where) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _review_sort_key(path: Path) -> tuple[int, str]:
    stem = path.stem.split("_")[0]
    return (int(stem) if stem.isdigit() else 0, path.name)
