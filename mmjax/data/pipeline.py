"""`config.data` -> a grain pipeline -> batches of global `jax.Array`s, with exactly restorable state.

    source -> [this process's shard] -> seeded shuffle (new order each epoch) -> per-record decode, augment,
    pick text (`ToExample`) -> drop bad records, counting -> batch -> per-batch normalize and tokenize
    (`FinishBatch`) -> [worker processes] -> global arrays

Records are read and converted `READ_CHUNK` at a time: one batched array_record read (parallel, in C++) and
one task for a read thread per chunk, instead of one of each per record, which cost more than the record's
own work. Work that can be done for a whole batch at once is done there: one vectorized normalization and
one `encode_batch` call cost far less than 128 small ones. Neither changes a single output value: records,
their order and their random draws are those of the plain per-record pipeline.

Randomness (shuffle, crops, flips, caption choice) is a pure function of (seed, epoch, record index), so the
iterator state is small (positions and counters) and restoring it mid-epoch replays the same batches.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import grain
import jax
import numpy as np
from absl import flags, logging

from mmjax.data import preprocess, sources
from mmjax.data.errors import MASK_KEY, POLICIES, SKIPPED_KEY
from mmjax.data.errors import DropBadRecords as _DropBadRecords
from mmjax.data.examples import CAPTION_MODES, FinishBatch, ToExample
from mmjax.data.tokenizers import TextTokenizer, tokenizer_from_config
from mmjax.sharding import batch_sharding


class DataIterator(grain.DatasetIterator):
    """Yields dicts of global `jax.Array`s (or numpy arrays when there is no mesh).

    A grain `DatasetIterator`, so `grain.checkpoint.CheckpointSave(item=it)` puts its state in an Orbax
    checkpoint; `get_state()` / `set_state()` give the same state as a JSON-able dict.

    Attributes:
      num_skipped: bad records skipped so far (by this process), also logged as they happen.
    """

    def __init__(self, parent: grain.DatasetIterator, batch_size: int, sharding: jax.sharding.Sharding | None):
        super().__init__(parent)
        self._batch_size, self._sharding = batch_size, sharding
        self.num_skipped = 0

    def __next__(self) -> dict[str, Any]:
        batch = next(self._parent)
        skipped = int(batch.pop(SKIPPED_KEY).sum())
        if skipped:
            self.num_skipped += skipped
            logging.warning("data: skipped %d bad records in this batch, %d so far", skipped, self.num_skipped)
        # A short final eval batch is padded to the full size (example_mask 0) so it shards like the others;
        # real examples go first (a placeholder carrying a skip count may sit among them). A full batch of
        # real examples (nearly every batch) is already in that form.
        mask = batch[MASK_KEY]
        if len(mask) != self._batch_size or not mask.all():
            order = np.argsort(-mask, kind="stable")
            pad = self._batch_size - len(order)
            batch = {k: np.concatenate([v[order], np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
        if self._sharding is None:
            return batch
        return {k: jax.make_array_from_process_local_data(self._sharding, v) for k, v in batch.items()}

    def get_state(self) -> dict[str, Any]:
        return {"pipeline": self._parent.get_state(), "num_skipped": self.num_skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["pipeline"])
        self.num_skipped = int(state["num_skipped"])


def validate(config) -> None:
    """Fails before any data is read if a key of `config.data` has a value outside its choices."""
    choices = {
        "source": sources.SOURCES,
        "task": ("image_text", "vqa", None),
        "captions": CAPTION_MODES,
        "text_overflow": ("truncate", "error"),
        "bad_records": POLICIES,
    }
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"data.{key}: expected one of {allowed}, got {config[key]!r}")
    if config.batch_size <= 0 or not config.image_size or config.image_size <= 0:
        raise ValueError(f"data.batch_size, data.image_size: must be > 0, got {config.batch_size}, {config.image_size}")


def build_pipeline(
    config,
    split: str = "train",
    *,
    train: bool | None = None,
    mesh: jax.sharding.Mesh | None = None,
    batch_axes: tuple[str, ...] | None = None,
    shard_options: grain.sharding.ShardOptions | None = None,
    tokenizer: TextTokenizer | None = None,
) -> DataIterator:
    """The input pipeline `config` (= `config.data`) describes, for `split`.

    Args:
      train: shuffle, augment, sample one caption, repeat `num_epochs` and drop the last partial batch;
        else one ordered pass with no augmentation, first caption, the last batch padded. Default: whether
        `split` starts with "train".
      mesh: if given, batches are global `jax.Array`s with the batch dimension sharded over `batch_axes`.
      shard_options: which slice of the split this process reads; default `ShardByJaxProcess`. Tests pass
        explicit options to simulate several hosts.
      tokenizer: overrides `config.tokenizer`.
    Returns:
      A `DataIterator`; batch size per process = `config.batch_size / process count`.
    """
    validate(config)
    train = split.startswith("train") if train is None else train
    shard_options = shard_options or grain.sharding.ShardByJaxProcess(drop_remainder=True)
    if config.batch_size % shard_options.shard_count:
        raise ValueError(f"data.batch_size={config.batch_size} must divide over {shard_options.shard_count} processes")
    local_batch = config.batch_size // shard_options.shard_count
    source = sources.open_source(config, split)
    if train and config.holdout_labels:
        source = sources.without_labels(source, config.holdout_labels)
    if train and config.train_question_types:
        source = sources.with_question_types(source, config.train_question_types)
    image = preprocess.ImagePreprocessor(
        size=config.image_size,
        mean=tuple(config.mean),
        std=tuple(config.std),
        random_crop=train and config.random_crop,
        crop_scale=tuple(config.crop_scale),
        crop_ratio=tuple(config.crop_ratio),
        flip=train and config.flip,
    )
    to_example = ToExample(
        task=source.task,
        image=image,
        tokenizer=tokenizer or tokenizer_from_config(config.tokenizer),
        where=source.where,
        fields=source.fields,
        captions=config.captions if train else ("all" if config.captions == "all" else "first"),
        max_captions=config.max_captions,
        answers=source.answers,
        question_types=source.question_types,
        max_regions=config.max_regions,
        text_overflow=config.text_overflow,
        bad_records=config.bad_records,
    )
    ds = grain.MapDataset.source(_BatchedReads(source.data))
    # Repeating reads past the end with growing indices; modulo gives back the record's position in the split.
    ds = ds.map_with_index(functools.partial(_with_index, num_records=len(ds)))
    ds = ds[shard_slice(len(ds), shard_options)].seed(config.seed)
    if train:
        ds = ds.shuffle() if config.shuffle else ds
        ds = ds.repeat(config.num_epochs)
    ds = _Chunks(ds.random_map(to_example), READ_CHUNK)
    prefetch = max(2, math.ceil(2 * local_batch / READ_CHUNK))  # chunks: about two batches ahead
    ds = _Unchunk(ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=prefetch)))
    ds = _DropBadRecords(ds).batch(local_batch, drop_remainder=train).map(FinishBatch(to_example))
    if config.worker_count > 0:
        # Worker processes re-read absl flags on start; unparsed flags would make them exit.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(config.worker_count, config.worker_buffer_size))
    sharding = batch_sharding(mesh, batch_axes) if mesh is not None else None
    return DataIterator(iter(ds), local_batch, sharding)


def shard_slice(num_records: int, options: grain.sharding.ShardOptions) -> slice:
    """The contiguous block of records shard `shard_index` of `shard_count` reads.

    With `drop_remainder` every shard gets floor(N / count) records, so processes step in lockstep; otherwise
    the first N % count shards get one more.
    """
    index, count = options.shard_index, options.shard_count
    if options.drop_remainder:
        size = num_records // count
        return slice(index * size, (index + 1) * size)
    base, extra = divmod(num_records, count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


def _with_index(index: int, record: dict, num_records: int) -> dict:
    return {**record, "index": index % num_records}


# Records per read task; any value gives the same batches (tests use others).
READ_CHUNK = 32


class _BatchedReads:
    """A random-access source that grain reads many records at a time from (`_getitems`).

    TFDS's array_record sources read a list of keys in one parallel C++ call (`__getitems__`), several times
    cheaper per record than one call per key.
    """

    def __init__(self, data):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int):
        return self._data[index]

    def _getitems(self, indices) -> list:
        return sources.read_many(self._data, indices)


class _Chunks(grain.MapDataset):
    """Element i is the list of the parent's elements [i * size, (i + 1) * size), fetched in one `_getitems`."""

    def __init__(self, parent: grain.MapDataset, size: int):
        super().__init__(parent)
        self._size = size

    def __len__(self) -> int:
        return math.ceil(len(self._parent) / self._size)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        start = index * self._size
        stop = min(start + self._size, len(self._parent))
        return list(self._parent._getitems(list(range(start, stop))))

    def __str__(self) -> str:
        return f"Chunks({self._size})"


class _Unchunk(grain.IterDataset):
    """Flattens an iterator of lists back into their elements; its state is (chunk's start state, offset)."""

    def __iter__(self) -> _UnchunkIterator:
        return _UnchunkIterator(self._parent.__iter__())

    def __str__(self) -> str:
        return "Unchunk"


class _UnchunkIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)
        self._chunk_state = parent.get_state()  # the parent's state just before the current chunk
        self._chunk, self._offset = [], 0

    def __next__(self):
        while self._offset >= len(self._chunk):
            state = self._parent.get_state()
            self._chunk = next(self._parent)
            self._chunk_state, self._offset = state, 0
        self._offset += 1
        return self._chunk[self._offset - 1]

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._chunk_state, "offset": self._offset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._chunk_state, self._chunk, self._offset = state["parent"], [], 0
        if state["offset"]:
            self._chunk = next(self._parent)
            self._offset = state["offset"]
