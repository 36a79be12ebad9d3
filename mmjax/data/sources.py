"""`config.data` -> a prepared, random-access source for one split, plus what the pipeline must know of it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import builders, jsonl, moving_shapes, real_datasets, shapes, sounding_shapes, spoken
from mmjax.data.schema import SOURCES


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
    prepared_skips: dict = dataclasses.field(default_factory=dict)  # {split: {reason: count}} skipped when preparing
    sample_rate: int | None = None  # records hold audio at this rate (None: no audio)


def _data_dir(config) -> str | None:
    return os.path.expanduser(config.data_dir) if config.data_dir else None


# generated sources whose settings are the group `config.data.<source>`
_GENERATED = {
    "moving_shapes": builders.moving_shapes_builder,
    "sounding_shapes": builders.sounding_shapes_builder,
    "spoken_digits": builders.spoken_digits_builder,
    "spoken_captions": builders.spoken_captions_builder,
}


def make_builder(config) -> tfds.core.DatasetBuilder:
    """The (unprepared) builder that `config.data.source` names; raises naming the key for unknown values."""
    kind, data_dir = config.source, _data_dir(config)
    if kind == "shapes":
        opts = config.shapes.to_dict() if hasattr(config.shapes, "to_dict") else dict(config.shapes)
        return builders.shapes_builder(data_dir, task=config.task, **opts)
    if kind in _GENERATED:
        group = config[kind]
        return _GENERATED[kind](data_dir, **(group.to_dict() if hasattr(group, "to_dict") else group))
    if kind == "easy_vqa":
        return real_datasets.easy_vqa_builder(data_dir, config.path, config.limit)
    if kind == "fashion_mnist":
        return real_datasets.fashion_mnist_builder(data_dir, config.path, config.limit)
    if kind == "jsonl":
        _need_jsonl_path(config)
        return jsonl.jsonl_builder(
            config.path,
            data_dir,
            task=config.task,
            bad_records=config.bad_records,
            max_chars=config.max_text_chars,
            image_size=config.image_size,
            min_frames=config.num_frames,
            max_frames=config.max_frames,
            sample_rate=config.sample_rate,
            audio=bool(config.audio_samples),
        )
    raise ValueError(f"data.source: expected one of {SOURCES}, got {kind!r}")


def _need_jsonl_path(config) -> None:
    if not config.path:
        raise ValueError("data.path: source 'jsonl' needs the directory holding train.jsonl / val.jsonl / test.jsonl")
    if not os.path.isdir(os.path.expanduser(config.path)):
        raise ValueError(f"data.path: {config.path!r} is not a directory (source 'jsonl')")


def available_splits(config) -> tuple[str, ...] | None:
    """The split names the dataset `config` describes has, found without preparing it (None: unknown until
    prepared). Cheap: a listing of the jsonl folder, the shapes counts, the fixed splits of the packaged sets."""
    if config.source == "shapes":
        return tuple(s for s in shapes.SPLITS if config.shapes[f"num_{s}"] > 0)
    splits = {"moving_shapes": moving_shapes.SPLITS, "sounding_shapes": sounding_shapes.SPLITS}
    if config.source in _GENERATED:
        return tuple(s for s in splits.get(config.source, spoken.SPLITS) if config[config.source][f"num_{s}"] > 0)
    if config.source in ("easy_vqa", "fashion_mnist"):
        return ("train", "test")
    if config.source == "jsonl":
        _need_jsonl_path(config)
        path = os.path.expanduser(config.path)
        return tuple(s for s in jsonl.SPLIT_FILES if os.path.exists(os.path.join(path, f"{s}.jsonl")))
    try:  # tfds: the prepared dataset's own record of its splits
        return tuple(tfds.builder(config.name, data_dir=_data_dir(config)).info.splits)
    except Exception:  # noqa: BLE001 - an unreadable dataset fails later with TFDS's own message
        return None


def split_name(split: str) -> str:
    """'train[:90%]' -> 'train' (TFDS slicing keeps the split's name in front)."""
    return split.split("[", 1)[0].strip()


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What tasks and evaluators need to know of a dataset, computed once (by the trainer) and handed in, so no
    task opens a dataset: answer vocabulary, question types, image class names, and the splits."""

    splits: tuple[str, ...]
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # examples per split, as prepared
    answers: tuple[str, ...] = ()
    question_types: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    skipped: dict = dataclasses.field(default_factory=dict)  # {split: {reason: count}} skipped when preparing

    def skipped_in(self, split: str) -> int:
        return sum(self.skipped.get(split, {}).values())


def dataset_info(config) -> DatasetInfo:
    """Prepares the dataset `config` (= config.data) describes if needed, and says what it holds."""
    source = open_source(config, "train")
    check_label_field(source, config.label_field)  # before a task is built on its classes
    splits = available_splits(config) or ()
    return DatasetInfo(
        splits=splits,
        sizes={split: len(open_source(config, split).data) for split in splits},
        answers=source.answers,
        question_types=source.question_types,
        classes=source.classes,
        skipped=source.prepared_skips,
    )


def open_source(config, split: str) -> Source:
    """Prepares (first time only) and opens `split` of the dataset `config` describes.

    Splits accept TFDS slicing, e.g. "train[:90%]". For source "tfds", `config.name` is a dataset already
    prepared as array_record under `config.data_dir` (a local path or gs://), read as is: no download.
    """
    if config.source == "tfds":
        if not config.name:
            raise ValueError("data.name: source 'tfds' needs a dataset name, e.g. 'coco_captions:1.1.0'")
        data = tfds.data_source(config.name, split=split, data_dir=_data_dir(config), download=False)
        return Source(
            data,
            f"{config.name}/{split}",
            config.task,
            answers=tuple(config.answers or ()),
            question_types=tuple(config.question_types or ()),
            fields=dict(config.fields or {}),
        )
    with builders.prepare_lock(make_builder(config).data_dir):
        builder = builders.prepare(make_builder(config))
    meta = builder.info.metadata or {}
    # the class names of the field batches carry as `label` (none known for another field)
    classes = meta.get(_CLASS_NAMES.get(config.label_field, ""), ())
    # a builder of one layout says so (TASK); the configurable ones (shapes, jsonl) keep it in their config
    task = getattr(builder, "TASK", None) or builder.builder_config.task
    return Source(
        builder.as_data_source(split),
        f"{builder.name}/{split}",
        task,
        answers=tuple(config.answers or meta.get("answers", ())),
        question_types=tuple(meta.get("question_types", ())),
        classes=tuple(classes),
        prepared_skips=dict(meta.get("bad_records", {})),
        fields=dict(getattr(builder, "FIELDS", {})),
        sample_rate=meta.get("sample_rate"),
    )


# record field -> the builder metadata naming its classes
_CLASS_NAMES = {"label": "classes", "fused_label": "fused_classes"}


def check_label_field(source: Source, field: str) -> None:
    """Fails naming the key unless the records hold `field`, the one batches carry as `label`: a missing field
    would otherwise read as -1 ("unknown") in every record."""
    if field == "label" or not len(source.data):
        return
    record = source.data[0]
    if field not in record:
        raise ValueError(
            f"data.label_field: the records of {source.where} have no field {field!r} (fields: {sorted(record)})"
        )


def check_audio(source: Source, audio_samples: int, sample_rate: int) -> None:
    """Fails naming the key unless the batch keys the config asks for (audio or images) are what the records hold
    and at the rate asked: audio read as images would make every record a bad one."""
    if source.sample_rate and not audio_samples:
        raise ValueError(
            f"data.audio_samples: the records of {source.where} hold audio; set the waveform length in batches "
            f"(e.g. {source.sample_rate} for 1 s)"
        )
    if audio_samples and not source.sample_rate:
        raise ValueError(f"data.audio_samples is {audio_samples} but the records of {source.where} hold no audio")
    if audio_samples and source.sample_rate != sample_rate:
        raise ValueError(
            f"data.sample_rate is {sample_rate} but the records of {source.where} hold audio at {source.sample_rate} Hz"
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
