"""Loading a model to predict with: a training workdir's newest intact checkpoint, or a Hugging Face CLIP directory.

A workdir is only read: no lock is taken, nothing is written or renamed (a training run may be using it), and
neither the config file nor the dataset is needed. The config comes from the checkpoint (each step saves the
resolved config it was trained with); the task is rebuilt from it with a `DatasetInfo` derived from that config
(contrastive and captioning runs need nothing from their dataset; a VQA run needs its answer vocabulary:
`data.answers`, or the one its dataset records, read without preparing anything).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax import sharding
from mmjax.data.preprocess import CLIP_MEAN, CLIP_STD, ImagePreprocessor
from mmjax.predict.images import PredictError
from mmjax.train.checkpoint import no_step
from mmjax.train.inputs import DATASET_INFO
from mmjax.train.optim import build_optimizer
from mmjax.train.state import TrainState
from mmjax.train.tasks import Task, build_task

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedRun:
    """A workdir's checkpoint, ready to predict with."""

    config: ml_collections.ConfigDict
    task: Task
    params: Any
    step: int


def open_checkpoints(workdir: str | os.PathLike) -> tuple[epath.Path, ocp.CheckpointManager, list[int]]:
    """(the checkpoints folder, a read-only manager of it, its finished steps newest first); PredictError when
    there are none. Close the manager when done."""
    root = epath.Path(workdir)
    if not root.is_dir():
        raise PredictError(f"{workdir}: no such workdir")
    directory = (root if "://" in str(root) else root.resolve()) / "checkpoints"  # Orbax takes absolute paths
    steps: list[int] = []
    manager = None
    if directory.is_dir():
        options = ocp.CheckpointManagerOptions(read_only=True, create=False)
        manager = ocp.CheckpointManager(str(directory), options=options, item_names=("state", "data", "config"))
        steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        if manager is not None:
            manager.close()
        raise PredictError(f"no checkpoint in {directory}: train first (mmjax train --config F --workdir {workdir})")
    return directory, manager, steps


def saved_config(directory: epath.Path, step: int) -> ml_collections.ConfigDict:
    """The resolved config `step` was saved with, resolved again onto this version's schema."""
    saved = json.loads((directory / str(step) / "config" / "metadata").read_text())
    return mmconfig.make_config(saved)


def dataset_info(config: ml_collections.ConfigDict, workdir=None) -> mmdata.DatasetInfo:
    """What the task needs of the run's dataset, without opening or preparing it: what the trainer recorded in
    workdir/dataset_info.json, else (runs trained before it did) as follows.

    Only VQA needs something, its answer vocabulary (index = the model's output): `data.answers` when the run
    stated it, else what the dataset's builder records (a constant for `shapes`; read from the prepared dataset's
    metadata for the others, so those must be prepared where `data.data_dir` points).
    """
    recorded = epath.Path(workdir) / DATASET_INFO if workdir is not None else None
    if recorded is not None and recorded.exists():
        fields = json.loads(recorded.read_text())
        return mmdata.DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    if config.task != "vqa":
        return mmdata.DatasetInfo(splits=())
    answers = tuple(config.data.answers or ())
    if not answers and config.data.source != "tfds":
        try:
            answers = tuple((mmdata.make_builder(config.data).info.metadata or {}).get("answers", ()))
        except (ValueError, OSError) as e:
            logger.info("the answer vocabulary could not be read from the dataset: %s", e)
    if not answers:
        where = f"data.source={config.data.source!r}, data.data_dir={config.data.data_dir!r}"
        raise PredictError(
            f"this VQA run's answer vocabulary is recorded by its dataset ({where}), which is not prepared here; "
            "prepare it (mmjax train on that config prepares it) or predict where it is"
        )
    return mmdata.DatasetInfo(splits=(), answers=answers)


def abstract_state(task: Task, config: ml_collections.ConfigDict, device: jax.Device) -> TrainState:
    """The train state `config` saves, as ShapeDtypeStructs on one device (what a checkpoint restores into)."""
    rng = jax.random.key(0)
    params = sharding.unbox(jax.eval_shape(task.init, rng, task.init_batch()))
    tx = build_optimizer(config.optim, params, config.total_steps).tx

    def state(p):
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p), rng=jax.random.key_data(rng))

    place = jax.sharding.SingleDeviceSharding(device)
    shapes = jax.eval_shape(state, params)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=place), shapes)


def load_run(workdir: str | os.PathLike, step: int | None = None) -> LoadedRun:
    """The newest checkpoint of `workdir` that reads back whole (or `step`), with the config it was saved with.

    A step whose config or arrays cannot be read is reported in a warning and the next older one is tried
    (as training does on resume, but nothing is renamed). PredictError if none can be read.
    """
    directory, manager, steps = open_checkpoints(workdir)
    if step is not None and step not in steps:
        manager.close()
        raise PredictError(no_step(step, directory, steps))
    steps = steps if step is None else [step]
    device = jax.local_devices()[0]
    problems = []
    try:
        for s in steps:
            try:
                config = saved_config(directory, s)
            except (OSError, ValueError) as e:  # ConfigError is a ValueError: a config this version cannot read
                problems.append(f"step {s}: its config: {_one_line(e)}")
                logger.warning("checkpoint step %d is passed over: %s", s, problems[-1])
                continue
            task = build_task(config, dataset_info(config, workdir))  # PredictError (VQA without answers) propagates
            target = abstract_state(task, config, device)
            try:
                restored = manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            except Exception as e:  # noqa: BLE001 - whatever failed, this step cannot be used
                problems.append(f"step {s}: {_one_line(e)[:300]}")
                logger.warning("checkpoint step %d is passed over: %s", s, problems[-1])
                continue
            return LoadedRun(config=config, task=task, params=restored["state"].params, step=s)
    finally:
        manager.close()
    raise PredictError(f"no readable checkpoint in {directory}: {'; '.join(problems)}")


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def hf_clip(path: str | os.PathLike):
    """A Hugging Face CLIPModel directory -> (CLIP model, params, tokenizer, image preprocessor).

    The tokenizer is the directory's own (tokenizer.json, or vocab.json + merges.txt) when it has one, else the
    vendored CLIP BPE; mean and std are its preprocessor_config.json's `image_mean`/`image_std` when present.
    Images are center-cropped to a square and resized to the tower's size in one resample, as mmjax's
    evaluation does (Hugging Face's processor resizes the short side, then crops: nearly, not exactly, the same).
    """
    from mmjax.convert import CheckpointFormatError, CheckpointMismatchError, load_pretrained
    from mmjax.models import CLIP

    path = Path(path)
    if not path.is_dir():
        raise PredictError(f"{path}: no such folder (expected a Hugging Face CLIP directory)")
    try:
        model, variables = load_pretrained(path)
    except (CheckpointFormatError, CheckpointMismatchError, ValueError, OSError) as e:
        raise PredictError(f"{path}: cannot load it: {_one_line(e)[:400]}") from None
    if not isinstance(model, CLIP):
        raise PredictError(f"{path} holds a {type(model).__name__}; predict --hf loads CLIP models")
    own = (path / "tokenizer.json").exists() or ((path / "vocab.json").exists() and (path / "merges.txt").exists())
    tokenizer = mmdata.clip_tokenizer(path if own else None, max_length=model.text_tower.max_length)
    processor = {}
    if (path / "preprocessor_config.json").exists():
        processor = json.loads((path / "preprocessor_config.json").read_text())
    image = ImagePreprocessor(
        size=model.image_tower.image_size,
        mean=tuple(processor.get("image_mean", CLIP_MEAN)),
        std=tuple(processor.get("image_std", CLIP_STD)),
    )
    return model, variables["params"], tokenizer, image
