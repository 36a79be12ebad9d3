"""The keys of `config.data`: each with its default and a one-line doc (gathered by `mmjax.config`).

A key is `(default, doc)` or `(default, doc, choices)`; a nested dict is a group. The schema in `mmjax/config`
joins this table to the rest; `default_config()` gives it alone, for the pipeline used without the trainer.
"""

from __future__ import annotations

from mmjax.config.schema import defaults
from mmjax.data.errors import POLICIES
from mmjax.data.examples import CAPTION_MODES, FRAME_ORDERS
from mmjax.data.preprocess import CLIP_MEAN, CLIP_STD

SOURCES = (
    "shapes",
    "moving_shapes",
    "sounding_shapes",
    "spoken_digits",
    "spoken_captions",
    "easy_vqa",
    "fashion_mnist",
    "jsonl",
    "tfds",
)
# the generated sources whose records hold audio: a config reading them needs data.audio_samples
AUDIO_SOURCES = ("sounding_shapes", "spoken_digits", "spoken_captions")
TOKENIZERS = ("clip", "bert", "word")

KEYS = {
    "source": ("shapes", "where records come from (shapes: generated offline; jsonl: your own folder)", SOURCES),
    "task": ("image_text", "record layout of shapes/jsonl/tfds: image_text or vqa", ("image_text", "vqa", None)),
    "data_dir": ("~/tensorflow_datasets", "where prepared datasets live (local path or gs://)"),
    "path": (
        None,
        "jsonl: the folder of train/val/test.jsonl; easy_vqa, fashion_mnist: a local copy of the files",
        None,
        str,
    ),  # fmt: skip
    "name": (None, "tfds: a dataset prepared as array_record under data_dir, e.g. 'coco_captions:1.1.0'", None, str),
    "limit": (None, "easy_vqa, fashion_mnist: keep the first N records per split (None: all)", None, int),
    "fields": (None, "tfds: canonical field -> record path, e.g. {'captions': 'captions/text'}", None, dict),
    "answers": (None, "VQA answer vocabulary; None: the one the dataset records (tfds VQA needs it)", None, tuple),
    "question_types": (None, "tfds VQA: question type names (index = question_type id)", None, tuple),
    "shapes": {
        "image_size": (64, "side of the generated images, in pixels"),
        "seed": (0, "generator seed: same seed, same bytes"),
        "num_train": (10_000, "scenes in the train split"),
        "num_validation": (1_000, "scenes in the validation split"),
        "num_test": (1_000, "scenes in the test split"),
        "num_compositional": (1_000, "scenes in the compositional split (held-out attribute pairs)"),
    },
    "moving_shapes": {
        "image_size": (32, "side of the generated frames, in pixels"),
        "num_frames": (8, "frames per generated clip"),
        "seed": (0, "generator seed: same seed, same bytes"),
        "num_train": (10_000, "clips in the train split"),
        "num_validation": (1_000, "clips in the validation split"),
        "num_test": (1_000, "clips in the test split"),
        "num_compositional": (1_000, "clips in the compositional split (held-out motion-shape pairs)"),
    },
    "sounding_shapes": {
        "image_size": (32, "side of the generated frames, in pixels"),
        "num_frames": (8, "frames per generated clip, at 8 a second: its soundtrack lasts num_frames / 8 s"),
        "seed": (0, "generator seed: same seed, same bytes and samples"),
        "num_train": (10_000, "clips in the train split"),
        "num_validation": (1_000, "clips in the validation split"),
        "num_test": (1_000, "clips in the test split"),
        "num_compositional": (1_000, "clips in the compositional split (colour-shape pairs never seen nor heard)"),
        "single_fraction": (
            0.0,
            "share of train clips holding the sounding shape alone: a curriculum for the fused label (its size "
            "then needs no binding); the other splits always hold two shapes",
        ),
    },
    "spoken_digits": {
        "seed": (0, "generator seed: same seed, same samples"),
        "num_train": (3_000, "utterances in the train split"),
        "num_validation": (300, "utterances in the validation split"),
        "num_test": (1_000, "utterances in the test split (voices the other splits never use)"),
    },
    "spoken_captions": {
        "seed": (0, "generator seed: same seed, same samples"),
        "num_train": (5_000, "utterances in the train split"),
        "num_validation": (500, "utterances in the validation split"),
        "num_test": (1_000, "utterances in the test split (voices the other splits never use)"),
    },
    "audio_samples": (
        0,
        "S > 0: the record's audio as waveforms [S] float32 (padded or cut; train: a random window of longer ones) "
        "with `audio_length`, taken by an audio tower with a frontend; 0: no audio",
    ),
    "sample_rate": (16_000, "Hz of the waveforms in batches (jsonl audio is resampled to it)"),
    "image_size": (None, "side S of the model's input images; None: model.image.image_size", None, int),
    "num_frames": (
        None,
        "T: clips of T frames [T, S, S, 3] in the visual slot, sampled uniformly; None: model.image.num_frames "
        "for a video tower, else still images",
        None,
        int,
    ),
    "frame_order": (
        "keep",
        "clips, in training and evaluation: keep the frames' order, shuffle it (per example), or repeat the "
        "single central frame: the controls that show whether a video model uses time",
        FRAME_ORDERS,
    ),
    "max_frames": (64, "jsonl video: frames stored per clip, at most (longer clips: spread evenly over the clip)"),
    "mean": (CLIP_MEAN, "per-channel mean subtracted after scaling to [0, 1]"),
    "std": (CLIP_STD, "per-channel standard deviation divided by after the mean"),
    "random_crop": (True, "training only: random resized crops (off when captions name positions)"),
    "crop_scale": ((0.5, 1.0), "random crop area range, as a fraction of the image"),
    "crop_ratio": ((3 / 4, 4 / 3), "random crop aspect-ratio range"),
    "flip": (False, "training only: random horizontal flips (off for left/right questions)"),
    "tokenizer": {
        "kind": ("clip", "clip (BPE), bert (WordPiece) or word (a closed word list)", TOKENIZERS),
        "path": (
            None,
            "vocabulary: None = vendored CLIP BPE; bert: vocab.txt or HF dir; word: list, 'shapes' or 'moving_shapes'",
            None,
            str,
        ),  # fmt: skip
        "max_length": (None, "T, tokens per text; None: model.text.max_length", None, int),
        "lowercase": (True, "bert from a plain vocab.txt: lower-case first"),
    },
    "captions": ("random", "caption per image when training; evaluation uses the first unless 'all'", CAPTION_MODES),
    "max_captions": (5, "K, captions per image in batches with captions='all'"),
    "max_regions": (0, "R, object boxes per example in batches (0: no region keys)"),
    "label_field": (
        "label",
        "the record field batches carry as `label` (sounding_shapes: `fused_label`, the sounding object's size, "
        "which neither the clip nor the soundtrack alone gives)",
    ),
    "sounding_boxes": (
        False,
        "sounding_shapes clips: batches carry `sounding_boxes` [T, 2, 4], both objects' boxes (x0, y0, x1, y1 in "
        "[0, 1]) in each sampled frame, the sounding one first; set by the localization evaluator (never cropped)",
    ),
    "holdout_labels": ((), "image classes (label values) left out of training; evaluation sees them all"),
    "train_question_types": ((), "VQA: train on these question types only (a curriculum stage)"),
    "text_overflow": ("truncate", "text longer than T: truncate, or error (a bad record)", ("truncate", "error")),
    "max_text_chars": (1000, "jsonl: longer texts are bad records when preparing"),
    "bad_records": ("skip", "skip (count and log) or fail (raise naming file:line) on a bad record", POLICIES),
    "shuffle": (True, "training: shuffle (a function of seed, epoch and record index)"),
    "num_epochs": (None, "training passes over the split; None: forever", None, int),
    "read_threads": (2, "threads reading and converting records in each process"),
    "worker_count": (0, "worker processes running the per-record work (0: none)"),
    "worker_buffer_size": (2, "batches each worker prepares ahead"),
}


def default_config(image_size: int = 64, max_length: int = 77):
    """`config.data` alone, for the pipeline used without the trainer: every default, plus what the trainer fills
    in: the run's global `batch_size` and `seed` (their schema defaults) and the sizes it derives from the model
    (here the arguments, since there is no model)."""
    import ml_collections

    from mmjax.config.schema import TOP

    config = ml_collections.ConfigDict({**defaults(KEYS), "batch_size": TOP["batch_size"][0], "seed": TOP["seed"][0]})
    config.image_size = image_size
    config.tokenizer.max_length = max_length
    return config
