"""One record (any builder's layout, or a TFDS dataset through a field mapping) -> one model example.

`ToExample` is the per-record grain transform: decode and augment the image, pick and tokenize the text, look
up the answer class, pad the regions. A record that cannot be converted becomes a `BadRecord` marker (skip
policy) or raises `BadRecordError` naming the dataset, split, record index and source line (fail policy).
"""

from __future__ import annotations

import collections
import dataclasses

import grain
import numpy as np

from mmjax.data.errors import BadRecord, BadRecordError, check_policy
from mmjax.data.preprocess import ImagePreprocessor, decode_image
from mmjax.data.tokenizers import TextTokenizer

CAPTION_MODES = ("random", "first", "all")


def get_field(record: dict, path: str):
    """`record["a"]["b"]` for path "a/b"; a key that itself contains "/" (e.g. TFDS "image/id") also works."""
    if path in record:
        return record[path]
    head, _, rest = path.partition("/")
    if not rest or head not in record:
        raise KeyError(f"record has no field {path!r} (fields: {sorted(record)})")
    return get_field(record[head], rest)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def answer_scores(answers: list[str], vocabulary: dict[str, int]) -> np.ndarray:
    """Soft targets [A]: min(1, votes / min(3, annotators)), VQA's rule, which is 1.0 for a single answer."""
    scores = np.zeros(len(vocabulary), np.float32)
    votes = collections.Counter(answers)
    for answer, count in votes.items():
        if answer in vocabulary:
            scores[vocabulary[answer]] = min(1.0, count / min(3, len(answers)))
    return scores


@dataclasses.dataclass
class ToExample(grain.transforms.RandomMap):
    """Converts a record with an `index` field (its position in the split) into an example; see `mmjax.data`.

    Attributes:
      task: "image_text" or "vqa".
      image: the image preprocessor (size, normalization, augmentation).
      tokenizer: text -> fixed-length ids.
      where: "name/split", prefixed to record indices in error messages.
      fields: canonical field -> path in the record, for datasets whose layout differs from the builders'.
      captions: "random" (train), "first" or "all" ([K, T] ids with `caption_mask` [K]).
      max_captions: K for captions="all".
      answers: VQA answer vocabulary (class id = position).
      question_types: names whose position is the `question_type` id.
      max_regions: R > 0 adds `boxes` [R, 4], `box_labels` [R], `box_mask` [R].
      text_overflow: "truncate", or "error" to treat text longer than the tokenizer's T as a bad record.
      bad_records: "skip" or "fail".
    """

    task: str
    image: ImagePreprocessor
    tokenizer: TextTokenizer
    where: str
    fields: dict = dataclasses.field(default_factory=dict)
    captions: str = "random"
    max_captions: int = 5
    answers: tuple[str, ...] = ()
    question_types: tuple[str, ...] = ()
    max_regions: int = 0
    text_overflow: str = "truncate"
    bad_records: str = "skip"

    def __post_init__(self):
        check_policy(self.bad_records)
        if self.captions not in CAPTION_MODES:
            raise ValueError(f"data.captions: expected one of {CAPTION_MODES}, got {self.captions!r}")
        if self.text_overflow not in ("truncate", "error"):
            raise ValueError(f"data.text_overflow: expected 'truncate' or 'error', got {self.text_overflow!r}")
        self._answer_ids = {a: i for i, a in enumerate(self.answers)}
        self._type_ids = {t: i for i, t in enumerate(self.question_types)}

    def random_map(self, record: dict, rng: np.random.Generator):
        index = int(record["index"])
        try:
            return self._convert(record, rng)
        except Exception as e:  # any failure is the record's: name it, then skip or fail by policy
            where = f"{self.where}[{index}]"
            image_id = self._field(record, "image_id", -1)
            if image_id != -1:
                where += f" image_id={image_id}"
            source = _text(record.get("source", b""))
            if source:
                where += f" ({source})"
            reason = f"{type(e).__name__}: {e}"
            if self.bad_records == "fail":
                raise BadRecordError(where, reason + " (set data.bad_records='skip' to skip such records)") from e
            return BadRecord(where, reason)

    def _field(self, record: dict, name: str, default=None):
        path = self.fields.get(name, name)
        try:
            return get_field(record, path)
        except KeyError:
            if default is not None:
                return default
            raise

    def _convert(self, record: dict, rng: np.random.Generator) -> dict:
        image = decode_image(self._field(record, "image"))
        out = {"index": np.int32(record["index"]), "image_id": np.int32(self._field(record, "image_id", -1))}
        if self.max_regions:
            boxes = np.asarray(self._field(record, "boxes", np.zeros((0, 4))), np.float32)
            labels = np.asarray(self._field(record, "labels", np.zeros((0,))), np.int32).reshape(-1)
            out["image"], (boxes, keep) = self.image(image, rng, boxes)
            out |= self._regions(boxes[keep], labels[keep])
        else:
            out["image"] = self.image(image, rng)
        if self.task == "image_text":
            out |= self._caption_tokens(self._field(record, "captions"), rng)
            out["label"] = np.int32(self._field(record, "label", -1))
        else:
            out |= self._tokens([_text(self._field(record, "question"))])
            answer = _text(self._field(record, "answer")).strip()
            answers = [_text(a).strip() for a in self._field(record, "answers", [answer])] or [answer]
            out["answer"] = np.int32(self._answer_ids.get(answer, -1))
            out["answer_scores"] = answer_scores(answers, self._answer_ids)
            out["question_type"] = np.int32(self._type_ids.get(_text(self._field(record, "question_type", "")), -1))
        return out

    def _caption_tokens(self, captions, rng) -> dict:
        captions = [_text(c) for c in np.asarray(captions, dtype=object).reshape(-1)]
        if not captions:
            raise ValueError("no captions")
        if self.captions == "random":
            return self._tokens([captions[int(rng.integers(len(captions)))]])
        if self.captions == "first":
            return self._tokens(captions[:1])
        kept = min(len(captions), self.max_captions)
        tokens = self._tokens(captions[:kept], squeeze=False)
        tokens = {k: np.pad(v, ((0, self.max_captions - kept), (0, 0))) for k, v in tokens.items()}
        tokens["input_ids"][kept:] = self.tokenizer.pad_id
        return tokens | {"caption_mask": (np.arange(self.max_captions) < kept).astype(np.int32)}

    def _tokens(self, texts: list[str], squeeze: bool = True) -> dict:
        for text in texts:
            if not text.strip():
                raise ValueError("empty text")
            if self.text_overflow == "error" and (n := self.tokenizer.num_tokens(text)) > self.tokenizer.max_length:
                raise ValueError(f"overlong text: {n} tokens > {self.tokenizer.max_length}: {text[:60]!r}...")
        tokens = self.tokenizer(texts)
        return {k: v[0] for k, v in tokens.items()} if squeeze else tokens

    def _regions(self, boxes: np.ndarray, labels: np.ndarray) -> dict:
        n = min(len(boxes), self.max_regions)
        out = {
            "boxes": np.zeros((self.max_regions, 4), np.float32),
            "box_labels": np.full((self.max_regions,), -1, np.int32),
            "box_mask": (np.arange(self.max_regions) < n).astype(np.int32),
        }
        out["boxes"][:n], out["box_labels"][:n] = boxes[:n], labels[:n]
        return out
