"""Builders for small real datasets that a package manager puts on disk: easy-VQA and Fashion-MNIST.

Neither downloads anything: each reads files that `pip install easy-vqa` or `apt-get install
dataset-fashion-mnist` installed (or that the user copied to a directory given as `path`), and otherwise fails
with the command that installs them.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data.builders import VERSION, LocalBuilder, features, png_bytes, record

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# Several phrasings per class, so a contrastive model sees class captions rather than one fixed string.
_FASHION_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a {}.",
    "a small picture of a {}.",
)
_EASY_VQA_SHAPES = ("circle", "rectangle", "triangle")


@dataclasses.dataclass
class LocalFilesConfig(tfds.core.BuilderConfig):
    path: str = ""
    limit: int | None = None  # keep only the first `limit` records per split (tests, quick experiments)


def _config(path: str, limit: int | None) -> LocalFilesConfig:
    return LocalFilesConfig(name="full" if limit is None else f"first{limit}", version=VERSION, path=path, limit=limit)


def easy_vqa_dir() -> str | None:
    """Where `pip install easy-vqa` put its data, or None."""
    spec = importlib.util.find_spec("easy_vqa")
    if spec is None or spec.origin is None:
        return None
    return os.path.join(os.path.dirname(spec.origin), "data")


class EasyVqa(LocalBuilder, skip_registration=True):
    """easy-VQA (Zhou 2020): 64x64 images of a shape, 13 answers; `train` (38,575 questions), `test` (9,673).

    There is no published validation split; take one from train with TFDS slicing, e.g. `train[90%:]`.
    """

    VERSION = VERSION
    TASK = "vqa"  # the record layout, whatever data.task says
    name = "mmjax_easy_vqa"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="easy-VQA, read from the files of the easy-vqa pip package.",
            features=features("vqa"),
            homepage="https://github.com/vzhou842/easy-VQA",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        root = self.builder_config.path
        answers_file = os.path.join(root, "answers.txt")
        if not os.path.exists(answers_file):
            raise FileNotFoundError(
                f"easy-VQA not found at {root!r}: run `pip install easy-vqa` (or set data.path to a copy "
                "of its data/ directory)"
            )
        with open(answers_file, encoding="utf-8") as f:
            answers = [line.strip() for line in f if line.strip()]
        self.info.metadata["answers"] = answers
        self.info.metadata["question_types"] = ["shape", "color", "yes/no"]
        return {split: self._generate_examples(split, answers) for split in ("train", "test")}

    def _generate_examples(self, split: str, answers: list[str]):
        root = os.path.join(self.builder_config.path, split)
        questions_file = os.path.join(root, "questions.json")
        with open(questions_file, encoding="utf-8") as f:
            questions = json.load(f)
        limit = self.builder_config.limit
        for i, (question, answer, image_id) in enumerate(questions[:limit]):
            # Its 13 answers are 3 shapes, 8 colours and yes/no; the answer's family is the question's type.
            kind = "yes/no" if answer in ("yes", "no") else "shape" if answer in _EASY_VQA_SHAPES else "color"
            with open(os.path.join(root, "images", f"{image_id}.png"), "rb") as f:
                image = f.read()
            source = f"{questions_file}:{i}"
            yield (
                i,
                record(
                    "vqa",
                    image,
                    image_id,
                    question=question,
                    answer=answer,
                    question_type=kind,
                    source=source,
                ),
            )


def easy_vqa_builder(data_dir: str | None = None, path: str | None = None, limit: int | None = None) -> EasyVqa:
    """easy-VQA from `path` (default: the installed easy-vqa package); fails saying what to install."""
    path = path or easy_vqa_dir()
    if path is None:
        raise FileNotFoundError("easy-VQA needs its data files: run `pip install easy-vqa`")
    return EasyVqa(config=_config(path, limit), data_dir=data_dir)


def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally .gz): uint8 images [N, rows, cols] or labels [N]."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, ndim = int.from_bytes(data[:4], "big"), data[3]
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte payload; the low byte is the number of dimensions
        raise ValueError(f"{path}: not a uint8 IDX file (magic {magic:#x})")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class FashionMnist(LocalBuilder, skip_registration=True):
    """Fashion-MNIST (Xiao et al. 2017) as image-text pairs: 28x28 grey images, captions naming the class.

    Splits `train` (60,000) and `test` (10,000); records carry `label` and class captions.
    """

    VERSION = VERSION
    TASK = "image_text"  # the record layout, whatever data.task says
    name = "mmjax_fashion_mnist"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST, read from local IDX files, with class-name captions.",
            features=features("image_text"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            metadata=tfds.core.MetadataDict(classes=list(FASHION_MNIST_CLASSES)),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train"), "test": self._generate_examples("t10k")}

    def _generate_examples(self, prefix: str):
        root = self.builder_config.path
        images_file = os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")
        images = read_idx(images_file)
        labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
        for i in range(min(len(images), self.builder_config.limit or len(images))):
            name = FASHION_MNIST_CLASSES[labels[i]]
            captions = [t.format(name) for t in _FASHION_TEMPLATES]
            source = f"{images_file}:{i}"
            yield (
                i,
                record("image_text", png_bytes(images[i]), i, captions=captions, label=labels[i], source=source),
            )


def fashion_mnist_builder(data_dir: str | None = None, path: str | None = None, limit: int | None = None):
    """Fashion-MNIST from `path` (default: where Debian's package puts it); fails saying what to install."""
    path = path or FASHION_MNIST_DIR
    missing = [
        f
        for p in ("train", "t10k")
        for f in (f"{p}-images-idx3-ubyte.gz", f"{p}-labels-idx1-ubyte.gz")
        if not os.path.exists(os.path.join(path, f))
    ]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files {missing} not found in {path!r}: run "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four *-idx*-ubyte.gz files "
            "from https://github.com/zalandoresearch/fashion-mnist in a directory and set data.path to it"
        )
    return FashionMnist(config=_config(path, limit), data_dir=data_dir)
