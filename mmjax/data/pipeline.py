"""`config.data` -> a grain pipeline -> batches of global `jax.Array`s, the same under any process count.

The global batch sequence is a function of (seed, step) alone: never of the number of processes, of devices
per process, of read threads or of worker processes (`data.worker_count`). Every choice is made at a GLOBAL
position g of the split's sequence:

    source (N records) -> [train: shuffle (a new global permutation each epoch) -> repeat `num_epochs`]
      position g holds record perm_{g // N}(g % N) (eval: record g)
    -> decode, augment, pick the text (`ToExample`), randomness seeded by (seed, g): crop, flip, caption
    -> global batch b = positions [b*B, (b+1)*B); this process reads only its rows R of each (`local_rows`),
       i.e. position b*B + R[j] is its local row j of batch b, so it reads and converts no other record
    -> one local batch = one batched read of its |R| records, per-batch normalize and tokenize (`FinishBatch`)
    -> [read threads; worker processes, each making every W-th local batch, interleaved back in order]
    -> global arrays (`jax.make_array_from_process_local_data`)

R is what the batch sharding puts on this process's devices (`sharding.batch_sharding`): the union of their
row blocks, ascending, which is the order `jax.make_array_from_process_local_data` expects. So the assembled
array holds global batch b, row for row, as a 1-process run does. Without a mesh, process p of P reads rows
[p*B/P, (p+1)*B/P).

Training drops the last partial global batch of a finite `num_epochs`; evaluation is one ordered pass, its
last global batch padded to B with placeholder rows (`example_mask` 0, no content, `index` -1).

A bad record (`data.bad_records="skip"`) keeps its slot, so no other row moves. In training the slot takes the
next good record of the same epoch's order (g+1, g+2, ... wrapping within the epoch), exactly as that record is
at its own position (same crop, same caption): batches stay full of real examples and losses need no mask. In
evaluation the slot is a placeholder row (`example_mask` 0) that metrics leave out. Either way the process that
read it logs it and it is counted (`DataIterator.num_skipped`). "fail" raises naming the record.

The iterator's state is the number of global batches consumed plus the skip count: the same in every process,
so a checkpoint written under one process count, mesh or worker count resumes exactly under any other.

Speed: a local batch is one batched array_record read (parallel, in C++) and one task for a read thread;
normalization and tokenization run once per batch (vectorized, one `encode_batch` call). None of this changes
a value: a batch equals converting each of its records alone (a test checks it).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from mmjax.data import preprocess, sources
from mmjax.data.errors import MASK_KEY, POLICIES, SKIPPED_KEY, BadRecord
from mmjax.data.examples import CAPTION_MODES, FRAME_ORDERS, FinishBatch, ToExample
from mmjax.data.tokenizers import TextTokenizer, tokenizer_from_config
from mmjax.sharding import batch_sharding


class DataIterator(grain.DatasetIterator):
    """Yields dicts of global `jax.Array`s (or numpy arrays, this process's rows, when there is no mesh).

    A grain `DatasetIterator`, so `grain.checkpoint.CheckpointSave(item=it)` puts its state in an Orbax
    checkpoint; `get_state()` / `set_state()` give the same state as a JSON-able dict: `batches` (global batches
    consumed) and `num_skipped`. It is the same in every process, so any process's saved state restores any
    process under any process or worker count.

    Attributes:
      num_skipped: bad records skipped so far in the global batches yielded (with a mesh: all processes' rows;
        without one: this process's rows). Reading it waits for the last batch's count, not for training.
    """

    def __init__(
        self,
        batches: grain.MapDataset,
        *,
        global_batch: int,
        rows: np.ndarray,
        read_options: grain.ReadOptions,
        workers: grain.MultiprocessingOptions | None,
        sharding: jax.sharding.NamedSharding | None,
    ):
        super().__init__()
        self._batches, self._global_batch = batches, global_batch
        self._read_options, self._workers, self._sharding = read_options, workers, sharding
        # With a mesh whose batch rows are not all on this process, skips are summed on the devices (a tiny
        # reduction dispatched with each batch, like the train step), so every process knows the global count.
        self._count_on_devices = sharding is not None and len(rows) < global_batch
        if sharding is not None:
            replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            self._add = jax.jit(lambda rows, *total: jnp.sum(rows) + sum(total), out_shardings=replicated)
        self._next_batch, self._it = 0, None
        self._skipped_host, self._skipped_device = 0, None

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = iter(self._dataset(self._next_batch))
        batch = next(self._it)
        self._next_batch += 1
        self._count(batch.pop(SKIPPED_KEY))
        if self._sharding is None:
            return batch
        return {k: self._global(v) for k, v in batch.items()}

    def _dataset(self, start: int) -> grain.IterDataset:
        ds = self._batches[start:].to_iter_dataset(self._read_options)
        if self._workers is not None:
            # Worker processes re-read absl flags on start; unparsed flags would make them exit.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            ds = ds.mp_prefetch(self._workers)  # worker w makes local batches w, w+W, ...; read back in order
        return ds

    def _global(self, value: np.ndarray) -> jax.Array:
        shape = (self._global_batch, *value.shape[1:])
        return jax.make_array_from_process_local_data(self._sharding, value, shape)

    def _count(self, skipped: np.ndarray) -> None:
        if not self._count_on_devices:
            self._skipped_host += int(skipped.sum())
        else:
            total = () if self._skipped_device is None else (self._skipped_device,)
            self._skipped_device = self._add(self._global(skipped.astype(np.int32)), *total)

    @property
    def num_skipped(self) -> int:
        on_devices = 0 if self._skipped_device is None else int(np.asarray(self._skipped_device.addressable_data(0)))
        return self._skipped_host + on_devices

    def get_state(self) -> dict[str, Any]:
        return {"batches": self._next_batch, "num_skipped": self.num_skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self.close()
        if "batches" not in state:  # written before positions were global: a per-process state
            logging.warning("data: iterator state %s is from an older mmjax; the pipeline starts over", list(state))
        self._next_batch = int(state.get("batches", 0))
        self._skipped_host, self._skipped_device = int(state.get("num_skipped", 0)), None

    def close(self) -> None:
        """Stops the read threads and worker processes (started again by the next `next`)."""
        if self._it is not None and hasattr(self._it, "close"):
            self._it.close()
        self._it = None


def validate(config) -> None:
    """Fails before any data is read if a key of `config.data` has a value outside its choices."""
    choices = {
        "source": sources.SOURCES,
        "task": ("image_text", "vqa", None),
        "captions": CAPTION_MODES,
        "frame_order": FRAME_ORDERS,
        "text_overflow": ("truncate", "error"),
        "bad_records": POLICIES,
    }
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"data.{key}: expected one of {allowed}, got {config[key]!r}")
    if config.frame_order != "keep" and not config.num_frames:
        raise ValueError(
            f"data.frame_order is {config.frame_order!r} but data.num_frames is unset: no clips to reorder"
        )
    images = not config.audio_samples or config.num_frames  # audio alone needs no image size
    if config.batch_size <= 0 or (images and (not config.image_size or config.image_size <= 0)):
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
      mesh: if given, batches are global `jax.Array`s with the batch dimension sharded over `batch_axes`, and
        this process reads the rows its devices hold.
      shard_options: without a mesh, which block of each global batch this process reads: rows
        [i*B/n, (i+1)*B/n) for shard_index i of shard_count n (default: this JAX process of all). Tests pass
        explicit options to simulate several hosts; not allowed with a mesh, which decides the rows itself.
      tokenizer: overrides `config.tokenizer`.
    Returns:
      A `DataIterator`; the global batch size is `config.batch_size`, whatever the process count.
    """
    validate(config)
    train = split.startswith("train") if train is None else train
    sharding = batch_sharding(mesh, batch_axes) if mesh is not None else None
    if sharding is not None and shard_options is not None:
        raise ValueError("build_pipeline: pass a mesh or shard_options, not both (the mesh decides the rows)")
    rows = local_rows(config.batch_size, sharding=sharding, shard_options=shard_options)
    source = sources.open_source(config, split)
    sources.check_audio(source, config.audio_samples, config.sample_rate)
    sources.check_label_field(source, config.label_field)
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
        fields={**source.fields, "label": config.label_field} if config.label_field != "label" else source.fields,
        captions=config.captions if train else ("all" if config.captions == "all" else "first"),
        max_captions=config.max_captions,
        answers=source.answers,
        question_types=source.question_types,
        max_regions=config.max_regions,
        num_frames=config.num_frames or 0,
        frame_order=config.frame_order,
        audio_samples=config.audio_samples,
        audio_random_window=train,
        sounding_boxes=config.sounding_boxes,
        text_overflow=config.text_overflow,
        bad_records=config.bad_records,
    )
    # The global sequence: position g of the (shuffled, repeated) split, converted with randomness of (seed, g).
    ds = grain.MapDataset.source(_BatchedReads(source.data))
    num_records = len(ds)
    # Repeating reads past the end with growing indices; modulo gives back the record's position in the split.
    ds = ds.map_with_index(functools.partial(_with_index, num_records=num_records)).seed(config.seed)
    if train:
        ds = ds.shuffle() if config.shuffle else ds
        ds = ds.repeat(config.num_epochs)
    ds = ds.random_map(to_example)
    batch = config.batch_size
    num_batches = len(ds) // batch if train else math.ceil(num_records / batch)
    ds = _LocalRows(ds, batch, rows, num_batches, num_records, to_example, substitute=train)
    # One element per local batch: one batched read, one read-thread task, one FinishBatch.
    ds = _Chunks(ds, len(rows)).map(FinishBatch(to_example))
    workers = None
    if config.worker_count > 0:
        workers = grain.MultiprocessingOptions(config.worker_count, config.worker_buffer_size)
    return DataIterator(
        ds,
        global_batch=batch,
        rows=rows,
        # threads each make one local batch; enough batches ahead to keep them all busy
        read_options=grain.ReadOptions(
            num_threads=config.read_threads, prefetch_buffer_size=max(2, config.read_threads)
        ),
        workers=workers,
        sharding=sharding,
    )


def local_rows(
    batch_size: int,
    *,
    sharding: jax.sharding.Sharding | None = None,
    shard_options: grain.sharding.ShardOptions | None = None,
) -> np.ndarray:
    """The rows of every global batch this process reads, ascending.

    With `sharding`: the row blocks its addressable devices hold (once each, however many devices replicate
    them), in the order `jax.make_array_from_process_local_data` maps local rows to global ones. Otherwise
    block `shard_index` of `shard_count` (default: this JAX process of all) of equal contiguous blocks.
    """
    if sharding is not None:
        try:
            indices = sharding.addressable_devices_indices_map((batch_size,))
        except ValueError as e:
            raise ValueError(f"data.batch_size={batch_size} must divide over the mesh's batch shards: {e}") from e
        blocks = sorted({index[0].indices(batch_size)[:2] for index in indices.values()})
        return np.concatenate([np.arange(start, stop) for start, stop in blocks])
    options = shard_options or grain.sharding.ShardByJaxProcess()
    index, count = options.shard_index, options.shard_count
    if batch_size % count:
        raise ValueError(f"data.batch_size={batch_size} must divide over {count} processes")
    size = batch_size // count
    return np.arange(index * size, (index + 1) * size)


def _with_index(index: int, record: dict, num_records: int) -> dict:
    return {**record, "index": index % num_records}


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


class _LocalRows(grain.MapDataset):
    """This process's rows of the global sequence `parent`, ready to batch.

    Element j is global position (j // L) * B + rows[j % L] (L = len(rows)): row rows[j % L] of global batch
    j // L. Each carries `example_mask` and `num_skipped`; a position past the end of an eval pass is a
    placeholder (mask 0), and a bad record is replaced as the module docstring says.
    """

    def __init__(
        self,
        parent: grain.MapDataset,
        batch_size: int,
        rows: np.ndarray,
        num_batches: int,
        num_records: int,
        to_example: ToExample,
        *,
        substitute: bool,
    ):
        super().__init__(parent)
        self._batch, self._rows, self._num_batches = batch_size, [int(r) for r in rows], num_batches
        self._num_records, self._to_example, self._substitute = num_records, to_example, substitute

    def __len__(self) -> int:
        return self._num_batches * len(self._rows)

    def __str__(self) -> str:
        return f"LocalRows({len(self._rows)} of {self._batch})"

    def _position(self, index: int) -> int:
        batch, row = divmod(index, len(self._rows))
        return batch * self._batch + self._rows[row]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        position = self._position(index)
        return self._row(position, self._parent[position] if position < len(self._parent) else None)

    def _getitems(self, indices) -> list:
        positions = [self._position(i) for i in indices]
        present = [p for p in positions if p < len(self._parent)]
        found = dict(zip(present, self._parent._getitems(present)))
        return [self._row(p, found.get(p)) for p in positions]

    def _row(self, position: int, element) -> dict:
        skipped = 0
        if isinstance(element, BadRecord):
            skipped = 1
            stand_in = "the next good record" if self._substitute else "a masked row"
            logging.warning("skipping bad record %s: %s (its slot takes %s)", element.where, element.reason, stand_in)
            element = self._next_good(position, element) if self._substitute else None
        if element is None:
            element, mask = self._to_example.placeholder(), 0
        else:
            mask = 1
        element[MASK_KEY], element[SKIPPED_KEY] = np.int32(mask), np.int32(skipped)
        return element

    def _next_good(self, position: int, bad: BadRecord) -> dict:
        """The first good example after `position` in the same epoch (wrapping around within it)."""
        epoch, offset = divmod(position, self._num_records)
        for step in range(1, self._num_records):
            element = self._parent[epoch * self._num_records + (offset + step) % self._num_records]
            if not isinstance(element, BadRecord):
                return element
        raise ValueError(f"data.bad_records='skip': every record of the split is bad, the last: {bad.where}")


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
