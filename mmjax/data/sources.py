"""`config.data` -> a prepared, random-access source for one split, plus what the pipeline must know of it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import builders, jsonl, real_datasets

SOURCES = ("shapes", "easy_vqa", "fashion_mnist", "jsonl", "tfds")


@dataclasses.dataclass(frozen=True)
class Source:
    """A split ready to read: `data[i]` is a record dict, `len(data)` its size."""

    data: Sequence
    where: str  # "name/split", used to name records in errors
    task: str
    answers: tuple[str, ...] = ()
    question_types: tuple[str, ...] = ()
    fields: dict = dataclasses.field(default_factory=dict)
    classes: tuple[str, ...] = ()  # image class names (index = `label`), for zero-shot evaluation


def _data_dir(config) -> str | None:
    data_dir = config.get("data_dir", None)
    return os.path.expanduser(data_dir) if data_dir else None


def make_builder(config) -> tfds.core.DatasetBuilder:
    """The (unprepared) builder that `config.data.source` names; raises naming the key for unknown values."""
    kind, data_dir = config.get("source", "shapes"), _data_dir(config)
    if kind == "shapes":
        opts = config.get("shapes", None) or {}
        opts = opts.to_dict() if hasattr(opts, "to_dict") else dict(opts)
        return builders.shapes_builder(data_dir, task=config.get("task", "image_text"), **opts)
    if kind == "easy_vqa":
        return real_datasets.easy_vqa_builder(data_dir, config.get("path", None), config.get("limit", None))
    if kind == "fashion_mnist":
        return real_datasets.fashion_mnist_builder(data_dir, config.get("path", None), config.get("limit", None))
    if kind == "jsonl":
        if not config.get("path", None):
            raise ValueError(
                "data.path: source 'jsonl' needs the directory holding train.jsonl / val.jsonl / test.jsonl"
            )
        return jsonl.jsonl_builder(
            config.path,
            data_dir,
            task=config.get("task", None),
            bad_records=config.get("bad_records", "skip"),
            max_chars=config.get("max_text_chars", 1000),
        )
    raise ValueError(f"data.source: expected one of {SOURCES}, got {kind!r}")


def open_source(config, split: str) -> Source:
    """Prepares (first time only) and opens `split` of the dataset `config` describes.

    Splits accept TFDS slicing, e.g. "train[:90%]". For source "tfds", `config.name` is a dataset already
    prepared as array_record under `config.data_dir` (a local path or gs://), read as is: no download.
    """
    if config.get("source", "shapes") == "tfds":
        if not config.get("name", None):
            raise ValueError("data.name: source 'tfds' needs a dataset name, e.g. 'coco_captions:1.1.0'")
        data = tfds.data_source(config.name, split=split, data_dir=_data_dir(config), download=False)
        task = config.get("task", "image_text")
        return Source(
            data,
            f"{config.name}/{split}",
            task,
            answers=tuple(config.get("answers", None) or ()),
            question_types=tuple(config.get("question_types", None) or ()),
            fields={k: v for k, v in (config.get("fields", None) or {}).items()},
        )
    builder = builders.prepare(make_builder(config))
    meta = builder.info.metadata or {}
    task = builder.builder_config.task if hasattr(builder.builder_config, "task") else _task_of(config)
    return Source(
        builder.as_data_source(split),
        f"{builder.name}/{split}",
        task,
        answers=tuple(config.get("answers", None) or meta.get("answers", ())),
        question_types=tuple(meta.get("question_types", ())),
        classes=tuple(meta.get("classes", ())),
    )


def read_many(data, keys: Sequence[int]) -> list:
    """data[k] for each key; TFDS array_record sources read a list of keys in one parallel C++ call."""
    keys = [int(k) for k in keys]
    if hasattr(data, "__getitems__"):
        return list(data.__getitems__(keys))
    return [data[k] for k in keys]


class _Subset:
    """Records `indices` of `data`, in that order, as a random-access source."""

    def __init__(self, data, indices: np.ndarray):
        self._data, self._indices = data, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int):
        return self._data[int(self._indices[index])]

    def __getitems__(self, indices) -> list:
        return read_many(self._data, [self._indices[i] for i in indices])


def _filter(source: Source, field: str, convert, values, *, keep: bool, key: str, what: str) -> Source:
    """`source` restricted to the records whose convert(record[field]) is in `values` (keep=True) or is not
    (keep=False). Reads that field of every record once, in chunks; fails naming the config `key` and the values
    present if one of `values` matches no record, so a typo never silently filters nothing."""
    n, found = len(source.data), []
    for start in range(0, n, 1024):
        found += [convert(r.get(field)) for r in read_many(source.data, range(start, min(start + 1024, n)))]
    found = np.asarray(found)
    present = sorted(set(found.tolist()) - {convert(None)})
    if not present:
        raise ValueError(f"data.{key}: the records of {source.where} carry no `{field}`")
    missing = [v for v in values if v not in present]
    if missing:
        raise ValueError(f"data.{key} {missing} match no record of {source.where} ({what} present: {present})")
    chosen = np.isin(found, values)
    return dataclasses.replace(source, data=_Subset(source.data, np.flatnonzero(chosen if keep else ~chosen)))


def without_labels(source: Source, labels) -> Source:
    """`source` minus the records whose `label` is in `labels` (classes held out of training, as in zero-shot
    experiments)."""
    labels = sorted({int(v) for v in labels})
    label = lambda v: -1 if v is None else int(v)  # noqa: E731
    return _filter(source, "label", label, labels, keep=False, key="holdout_labels", what="labels")


def with_question_types(source: Source, types) -> Source:
    """`source` restricted to the VQA records whose `question_type` is in `types` (e.g. training a stage on the
    relational questions alone)."""
    text = lambda v: "" if v is None else v.decode("utf-8") if isinstance(v, bytes) else str(v)  # noqa: E731
    return _filter(
        source, "question_type", text, sorted(set(types)), keep=True, key="train_question_types", what="types"
    )


def _task_of(config) -> str:
    # easy-VQA is only VQA and Fashion-MNIST only image-text, whatever the config says.
    return {"easy_vqa": "vqa", "fashion_mnist": "image_text"}.get(config.get("source"), config.get("task"))
