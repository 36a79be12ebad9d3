"""TFDS builders that prepare datasets from local bytes into array_record, readable without TensorFlow.

Every builder here writes one of two record layouts, so the pipeline reads them all the same way:

* image-text (one record per image): `image` (PNG/JPEG bytes; shapes: raw uint8 [S, S, 3]), `image_id` int64,
  `captions` [K] text, `boxes` [R, 4] float32 (x0, y0, x1, y1 in [0, 1]), `labels` [R] int64 (per-object
  classes), `label` int64 (image class, -1 if none), `source` text (`file:line` the record came from, or "").
* VQA (one record per question): `image`, `image_id`, `question`, `answer` text, `answers` [N] text (all
  annotators' answers, for soft scores), `question_type` text, `boxes`, `labels`, `source`.

The clip and spoken builders store `video` or `audio` (sounding_shapes: both) instead of `image` and say, in their
class attribute `FIELDS`, which of their fields plays which canonical part (e.g. `text` is the caption).

Builders record in `info.metadata`: `answers` (VQA answer vocabulary, index = class id), `question_types`,
`classes` (image class names; clips: action names), `fused_classes` (sounding_shapes' `fused_label` names),
`sample_rate` (records holding audio) and `bad_records` (per split, how many were skipped and why).

Builders are never registered by name with TFDS (`skip_registration`) so they cannot clash with its catalog.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import shuffle as tfds_shuffle

from mmjax.data import moving_shapes, shapes, sounding_shapes, spoken

logger = logging.getLogger(__name__)

VERSION = tfds.core.Version("1.0.0")
# 1.1.0: images stored as raw uint8 [S, S, 3] rather than PNG (decoding a PNG cost more than the rest of a record).
SHAPES_VERSION = tfds.core.Version("1.1.0")


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the builders here: data comes from local bytes, never from URLs with checksums."""

    # TFDS derives checksum and README paths from `code_path`; for a class outside its catalog that lookup
    # imports the `importlib_resources` backport, which TFDS 4.9.10 does not depend on (2025-11). Having no
    # code path is also the truth here: there are no download checksums to find.
    code_path = None

    # TFDS prints "Downloading and preparing dataset ..." to stdout; nothing is downloaded here, and the trainer
    # says what it prepares in its own log.
    def _log_download_bytes(self) -> None:
        logger.info("preparing %s (generated locally, no download) in %s", self.name, self.data_dir)

    def _log_download_done(self) -> None:
        logger.info("prepared %s in %s", self.name, self.data_dir)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # fast to write; PNGs here are tiny anyway
    return buf.getvalue()


def features(task: str, image_shape: tuple[int, int, int] | None = None) -> tfds.features.FeaturesDict:
    """The record layout for `task` ("image_text" or "vqa"); see the module docstring.

    `image` holds encoded bytes (PNG/JPEG, decoded by the pipeline with Pillow), or with `image_shape` a raw
    uint8 array of that shape, stored as its bytes: nothing to decode, at ~8x the size of a PNG of a scene.
    """
    if image_shape is None:
        image = tfds.features.Scalar(dtype=np.object_)
    else:
        image = tfds.features.Tensor(shape=image_shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES)
    common = {
        "image": image,
        "image_id": np.int64,
        "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int64),
        "source": tfds.features.Text(),
    }
    if task == "image_text":
        return tfds.features.FeaturesDict(
            {**common, "captions": tfds.features.Sequence(tfds.features.Text()), "label": np.int64}
        )
    if task == "vqa":
        return tfds.features.FeaturesDict(
            {
                **common,
                "question": tfds.features.Text(),
                "answer": tfds.features.Text(),
                "answers": tfds.features.Sequence(tfds.features.Text()),
                "question_type": tfds.features.Text(),
            }
        )
    raise ValueError(f"data.task: expected 'image_text' or 'vqa', got {task!r}")


def record(task: str, image: bytes | np.ndarray, image_id: int, **fields) -> dict:
    """A record of `task`'s layout, with empty regions / no class / no source unless given."""
    out = {
        "image": image,
        "image_id": image_id,
        "boxes": np.asarray(fields.pop("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4),
        "labels": np.asarray(fields.pop("labels", ()), np.int64).reshape(-1),
        "source": fields.pop("source", ""),
    }
    if task == "image_text":
        out |= {"captions": list(fields.pop("captions")), "label": int(fields.pop("label", -1))}
    else:
        answer = fields.pop("answer")
        out |= {
            "question": fields.pop("question"),
            "answer": answer,
            "answers": list(fields.pop("answers", [answer])),
            "question_type": fields.pop("question_type", ""),
        }
    if fields:
        raise TypeError(f"unexpected record fields {sorted(fields)}")
    return out


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    task: str = "image_text"
    image_size: int = 64
    seed: int = 0
    num_train: int = 10_000
    num_validation: int = 1_000
    num_test: int = 1_000
    num_compositional: int = 1_000


class Shapes(LocalBuilder, skip_registration=True):
    """The default dataset: generated scenes (see `mmjax.data.shapes`), same seed -> same bytes."""

    VERSION = SHAPES_VERSION
    RELEASE_NOTES = {"1.1.0": "images stored as raw uint8 arrays instead of PNG", "1.0.0": "first version"}
    name = "mmjax_shapes"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic scenes of coloured shapes with captions, VQA and object boxes.",
            features=features(cfg.task, image_shape=(cfg.image_size, cfg.image_size, 3)),
            metadata=tfds.core.MetadataDict(
                answers=list(shapes.ANSWERS),
                question_types=list(shapes.QUESTION_TYPES),
                object_classes=[f"{c} {s}" for c in shapes.COLOUR_NAMES for s in shapes.SHAPES],
            ),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        sizes = {
            "train": cfg.num_train,
            "validation": cfg.num_validation,
            "test": cfg.num_test,
            "compositional": cfg.num_compositional,
        }
        return {split: self._generate_examples(split, n) for split, n in sizes.items() if n > 0}

    def _generate_examples(self, split: str, num: int):
        cfg = self.builder_config
        for index in range(num):
            scene = shapes.generate(cfg.seed, split, index, cfg.image_size)
            image = scene["image"]
            regions = {"boxes": scene["boxes"], "labels": scene["labels"]}
            if cfg.task == "image_text":
                yield index, record("image_text", image, index, captions=scene["captions"], **regions)
                continue
            for q, (question, answer, kind) in enumerate(scene["qa"]):
                yield (
                    f"{index}/{q}",
                    record("vqa", image, index, question=question, answer=answer, question_type=kind, **regions),
                )


def _configured(builder_cls, config_cls, data_dir: str | None, name, **settings):
    """A builder of `builder_cls` for these settings (defaults: `config_cls`'s), in a directory of its own under
    `data_dir` named by `name(config)`, so datasets generated with other settings never mix."""
    config = config_cls(name="", version=builder_cls.VERSION, **settings)
    return builder_cls(config=dataclasses.replace(config, name=name(config)), data_dir=data_dir)


def _counts(c) -> str:
    return "-".join(str(getattr(c, f"num_{split}")) for split in ("train", "validation", "test", "compositional"))


def shapes_builder(data_dir: str | None = None, **settings) -> Shapes:
    """The shapes builder for these settings (`ShapesConfig`'s fields)."""
    return _configured(
        Shapes, ShapesConfig, data_dir, lambda c: f"{c.task}-{c.image_size}px-seed{c.seed}-n{_counts(c)}", **settings
    )


@dataclasses.dataclass
class MovingShapesConfig(tfds.core.BuilderConfig):
    image_size: int = 32
    num_frames: int = 8
    seed: int = 0
    num_train: int = 10_000
    num_validation: int = 1_000
    num_test: int = 1_000
    num_compositional: int = 1_000


class MovingShapes(LocalBuilder, skip_registration=True):
    """Generated clips (see `mmjax.data.moving_shapes`): frames as raw uint8 [T, S, S, 3], the actor's motion as
    the label, three captions, per-frame boxes of each object; same seed -> same bytes."""

    # 1.1.0: captions place each object where it starts (most test captions then name one clip)
    VERSION = tfds.core.Version("1.1.0")
    name = "mmjax_moving_shapes"
    TASK = "image_text"
    # the pipeline's visual slot reads the clip (`data.num_frames` says it is one)
    FIELDS = {"image": "video", "image_id": "video_id"}

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        frames = (cfg.num_frames, cfg.image_size, cfg.image_size, 3)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic clips of moving coloured shapes with action labels and captions.",
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Tensor(shape=frames, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
                    "video_id": np.int64,
                    "label": np.int64,
                    "motion": tfds.features.Text(),
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "boxes": tfds.features.Tensor(
                        shape=(cfg.num_frames, moving_shapes.MAX_OBJECTS, 4), dtype=np.float32
                    ),
                }
            ),
            metadata=tfds.core.MetadataDict(classes=list(moving_shapes.MOTIONS)),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        sizes = dict(
            zip(moving_shapes.SPLITS, (cfg.num_train, cfg.num_validation, cfg.num_test, cfg.num_compositional))
        )
        return {split: self._generate_examples(split, n) for split, n in sizes.items() if n > 0}

    def _generate_examples(self, split: str, num: int):
        cfg = self.builder_config
        for index in range(num):
            clip = moving_shapes.generate(cfg.seed, split, index, cfg.image_size, cfg.num_frames)
            fields = {k: clip[k] for k in ("video", "label", "motion", "captions", "boxes")}
            yield index, {**fields, "video_id": index}


def moving_shapes_builder(data_dir: str | None = None, **settings) -> MovingShapes:
    """The moving_shapes builder for these settings (`MovingShapesConfig`'s fields)."""
    return _configured(
        MovingShapes,
        MovingShapesConfig,
        data_dir,
        lambda c: f"{c.image_size}px-{c.num_frames}f-seed{c.seed}-n{_counts(c)}",
        **settings,
    )


@dataclasses.dataclass
class SoundingShapesConfig(MovingShapesConfig):
    single_fraction: float = 0.0  # share of train clips holding the sounding shape alone (sounding_shapes.generate)


class SoundingShapes(MovingShapes, skip_registration=True):
    """Generated clips with a soundtrack (see `mmjax.data.sounding_shapes`): frames as raw uint8 [T, S, S, 3], the
    waveform float32 [T * SAMPLE_RATE / FPS], the action as `label`, the sounding object's index (`sounding`) and
    size (`fused_label`), captions, per-frame boxes of both objects and (on, off) seconds of each one's sound."""

    VERSION = VERSION  # its captions are its own: moving_shapes' versions do not change it
    name = "mmjax_sounding_shapes"
    # the pipeline's visual slot reads the clip, and its `audio` slot the soundtrack (data.audio_samples)
    FIELDS = {"image": "video", "image_id": "video_id"}

    def _info(self) -> tfds.core.DatasetInfo:
        cfg, n = self.builder_config, moving_shapes.MAX_OBJECTS
        frames = (cfg.num_frames, cfg.image_size, cfg.image_size, 3)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic clips of two moving shapes, one of them making a sound, with its soundtrack.",
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Tensor(shape=frames, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES),
                    "video_id": np.int64,
                    "audio": tfds.features.Tensor(
                        shape=(cfg.num_frames * sounding_shapes.SAMPLES_PER_FRAME,), dtype=np.float32
                    ),
                    "label": np.int64,
                    "motion": tfds.features.Text(),
                    "sounding": np.int64,
                    "fused_label": np.int64,
                    "captions": tfds.features.Sequence(tfds.features.Text()),
                    "boxes": tfds.features.Tensor(shape=(cfg.num_frames, n, 4), dtype=np.float32),
                    "sound_times": tfds.features.Tensor(shape=(n, 2), dtype=np.float32),
                }
            ),
            metadata=tfds.core.MetadataDict(
                classes=list(sounding_shapes.MOTIONS),
                fused_classes=list(shapes.SIZES),
                sample_rate=sounding_shapes.SAMPLE_RATE,
                fps=sounding_shapes.FPS,
            ),
        )

    def _generate_examples(self, split: str, num: int):
        cfg = self.builder_config
        keys = ("video", "audio", "label", "motion", "sounding", "fused_label", "captions", "boxes", "sound_times")
        for index in range(num):
            clip = sounding_shapes.generate(cfg.seed, split, index, cfg.image_size, cfg.num_frames, cfg.single_fraction)
            yield index, {**{k: clip[k] for k in keys}, "video_id": index}


def sounding_shapes_builder(data_dir: str | None = None, **settings) -> SoundingShapes:
    """The sounding_shapes builder for these settings (`SoundingShapesConfig`'s fields)."""
    return _configured(
        SoundingShapes,
        SoundingShapesConfig,
        data_dir,
        # datasets prepared before single_fraction existed keep their name
        lambda c: (
            f"{c.image_size}px-{c.num_frames}f-seed{c.seed}-n{_counts(c)}"
            + (f"-single{c.single_fraction:g}" if c.single_fraction else "")
        ),
        **settings,
    )


def _audio_features(**extra) -> tfds.features.FeaturesDict:
    """The spoken layouts: a float32 waveform at `spoken.SAMPLE_RATE`, its text, and how it was spoken."""
    return tfds.features.FeaturesDict(
        {
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "audio_id": np.int64,
            "text": tfds.features.Text(),
            "voice": tfds.features.Text(),
            "speed": np.int64,
            "pitch": np.int64,
            **extra,
        }
    )


class _Spoken(LocalBuilder, skip_registration=True):
    """What the spoken builders share: eSpeak NG utterances (see `mmjax.data.spoken`), one per record, the test
    split spoken by voices the other splits never use; same seed -> same samples."""

    VERSION = VERSION
    TASK = "image_text"
    # the text is the record's one caption; the pipeline reads the `audio` field itself (data.audio_samples)
    FIELDS = {"captions": "text", "image_id": "audio_id"}

    def utterance(self, split: str, index: int) -> dict:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        sizes = dict(zip(spoken.SPLITS, (cfg.num_train, cfg.num_validation, cfg.num_test)))
        return {split: self._generate_examples(split, n) for split, n in sizes.items() if n > 0}

    def _generate_examples(self, split: str, num: int):
        for index in range(num):
            yield index, {**self.utterance(split, index), "audio_id": index}


@dataclasses.dataclass
class SpokenDigitsConfig(tfds.core.BuilderConfig):
    seed: int = 0
    num_train: int = 3_000
    num_validation: int = 300
    num_test: int = 1_000


class SpokenDigits(_Spoken, skip_registration=True):
    """Spoken digit words, the digit as the label."""

    name = "mmjax_spoken_digits"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Spoken digits (eSpeak NG), with a held-out-voice test split.",
            features=_audio_features(label=np.int64),
            metadata=tfds.core.MetadataDict(classes=list(spoken.DIGITS), sample_rate=spoken.SAMPLE_RATE),
        )

    def utterance(self, split: str, index: int) -> dict:
        return spoken.spoken_digit(self.builder_config.seed, split, index)


@dataclasses.dataclass
class SpokenCaptionsConfig(tfds.core.BuilderConfig):
    seed: int = 0
    num_train: int = 5_000
    num_validation: int = 500
    num_test: int = 1_000


class SpokenCaptions(_Spoken, skip_registration=True):
    """Spoken descriptions of `shapes` objects ("a large blue cross at the top"), for audio-text retrieval and
    transcription; `label` is -1 (no class)."""

    name = "mmjax_spoken_captions"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "two objects per description, not one", "1.0.0": "first version"}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Spoken shapes object descriptions (eSpeak NG), with a held-out-voice test split.",
            features=_audio_features(label=np.int64),
            metadata=tfds.core.MetadataDict(sample_rate=spoken.SAMPLE_RATE),
        )

    def utterance(self, split: str, index: int) -> dict:
        return {**spoken.spoken_caption(self.builder_config.seed, split, index), "label": -1}


def _spoken_name(c) -> str:
    return f"seed{c.seed}-n{c.num_train}-{c.num_validation}-{c.num_test}"


def spoken_digits_builder(data_dir: str | None = None, **settings) -> SpokenDigits:
    """The spoken digits builder for these settings (`SpokenDigitsConfig`'s fields)."""
    return _configured(SpokenDigits, SpokenDigitsConfig, data_dir, _spoken_name, **settings)


def spoken_captions_builder(data_dir: str | None = None, **settings) -> SpokenCaptions:
    """The spoken captions builder for these settings (`SpokenCaptionsConfig`'s fields)."""
    return _configured(SpokenCaptions, SpokenCaptionsConfig, data_dir, _spoken_name, **settings)


def prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
    """Writes the dataset as array_record unless it is already there (TFDS then reuses it). Hold `prepare_lock`
    from before the builder is made (see sources.open_source)."""
    with _in_memory_shuffle_limit(_half_the_ram()):
        builder.download_and_prepare(file_format="array_record")
    return builder


@contextlib.contextmanager
def prepare_lock(data_dir: str):
    """An exclusive flock on `<builder's data dir>.lock` while a dataset is prepared.

    Processes preparing the same dataset at once (several runs on one data_dir, the processes of a run launched
    without a barrier) take turns, so one writes and the others then reuse it: TFDS alone fails the second writer
    with FileExistsError when it renames its `incomplete` directory. A builder made before the lock was taken
    has read no dataset_info and would not find the files, so make it again inside. Local disks only: object
    stores have no lock and rely on the trainer preparing on one process first."""
    if "://" in str(data_dir):
        yield
        return
    path = f"{os.fspath(data_dir).rstrip(os.sep)}.lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _half_the_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


@contextlib.contextmanager
def _in_memory_shuffle_limit(limit: int):
    """Raise TFDS's in-memory shuffle buffer limit while preparing.

    Workaround (tensorflow-datasets 4.9.10, 2026-11): past 1 GB a split's examples are spilled to temporary files
    through tf.io.gfile, which needs TensorFlow, absent here; the full `shapes` VQA split is ~1.1 GB. Splits
    larger than `limit` still spill and so still need `pip install tensorflow`.
    """
    previous = tfds_shuffle.MAX_MEM_BUFFER_SIZE
    tfds_shuffle.MAX_MEM_BUFFER_SIZE = max(previous, limit)
    try:
        yield
    finally:
        tfds_shuffle.MAX_MEM_BUFFER_SIZE = previous
