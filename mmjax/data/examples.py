"""One record (any builder's layout, or a TFDS dataset through a field mapping) -> one model example.

`ToExample` is the per-record grain transform: decode and augment the image (uint8), pick the text, look up
the answer class, pad the regions. A record that cannot be converted becomes a `BadRecord` marker (skip
policy) or raises `BadRecordError` naming the dataset, split, record index and source line (fail policy).

What can be done for many records at once is left to `ToExample.finish_batch`, run on each batch
(`FinishBatch`): normalizing the images (one vectorized float32 pass) and tokenizing the texts (one
`encode_batch` call). Per record, the example carries the chosen text(s) under `TEXT_KEY` (an object array)
and the image as uint8; the finished batch is the same, bit for bit, as converting each record completely.

A row that stands for no record (the padding of a final eval batch, a skipped bad record in evaluation) is
`ToExample.placeholder()`: every key of a real example, same shapes and dtypes, no content, `index` -1.
"""

from __future__ import annotations

import collections
import dataclasses

import grain
import numpy as np

from mmjax.data.errors import MASK_KEY, BadRecord, BadRecordError, check_policy
from mmjax.data.media import frame_indices
from mmjax.data.preprocess import ImagePreprocessor, decode_frames, decode_image
from mmjax.data.tokenizers import TextTokenizer

CAPTION_MODES = ("random", "first", "all")
# The controls that show whether a video model uses time: its clips' frames in order, shuffled, or one frame.
FRAME_ORDERS = ("keep", "shuffle", "single")
# Per-record text(s) waiting for `finish_batch`: object array [] (one text) or [K] (captions="all", None = none).
TEXT_KEY = "_text"


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


def _scalar(text: str) -> np.ndarray:
    """A 0-d object array holding `text`: batching stacks these into an object array [B] of str."""
    out = np.empty((), dtype=object)
    out[()] = text
    return out


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
      num_frames: T > 0: the visual field is a clip, sampled uniformly to T frames [T, S, S, 3].
      frame_order: for clips: "keep" the sampled frames in order, "shuffle" them (a permutation drawn from the
        example's rng: fixed per example, different between examples), or repeat the "single" central one
        (index T // 2) T times.
      audio_samples: S > 0: the record's `audio` waveform (float32 [n]) becomes `audio` [S], zero-padded or cut,
        with `audio_length` (real samples); the example then has no image (the audio takes the visual slot), unless
        num_frames is set too: then it has both, the clip and its soundtrack from the start (the frames are spread
        over the whole clip, so the whole soundtrack is what they show).
      sounding_boxes: clips: add `sounding_boxes` [T, 2, 4], the record's `boxes` [frames, 2 objects, 4] in each
        sampled frame, the `sounding` object's first, as they are (so no random crop or flip may move the pixels).
      audio_random_window: cut a longer waveform at a random offset (training) instead of keeping its start; not
        with num_frames (the sound would no longer be the frames').
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
    num_frames: int = 0
    frame_order: str = "keep"
    audio_samples: int = 0
    audio_random_window: bool = False
    sounding_boxes: bool = False
    text_overflow: str = "truncate"
    bad_records: str = "skip"

    def __post_init__(self):
        check_policy(self.bad_records)
        if self.captions not in CAPTION_MODES:
            raise ValueError(f"data.captions: expected one of {CAPTION_MODES}, got {self.captions!r}")
        if self.text_overflow not in ("truncate", "error"):
            raise ValueError(f"data.text_overflow: expected 'truncate' or 'error', got {self.text_overflow!r}")
        if self.audio_samples and self.max_regions:
            raise ValueError("data.audio_samples: audio examples carry no regions (data.max_regions)")
        if self.frame_order not in FRAME_ORDERS:
            raise ValueError(f"data.frame_order: expected one of {FRAME_ORDERS}, got {self.frame_order!r}")
        if self.frame_order != "keep" and not self.num_frames:
            raise ValueError(f"data.frame_order={self.frame_order!r} reorders clips, but data.num_frames is unset")
        if self.sounding_boxes and not self.num_frames:
            raise ValueError("data.sounding_boxes: the boxes are per frame of a clip, but data.num_frames is unset")
        if self.sounding_boxes and (self.image.random_crop or self.image.flip):
            raise ValueError("data.sounding_boxes: boxes are not cropped nor flipped; set data.random_crop=False")
        if self.num_frames and self.max_regions:
            raise ValueError("data.max_regions: region boxes are for still images, not clips (data.num_frames)")
        self._answer_ids = {a: i for i, a in enumerate(self.answers)}
        self._type_ids = {t: i for i, t in enumerate(self.question_types)}

    def random_map(self, record: dict, rng: np.random.Generator):
        """Record -> example before `finish_batch` (uint8 image, text under `TEXT_KEY`), or a `BadRecord`."""
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

    def placeholder(self) -> dict:
        """A row holding no record, shaped like `random_map`'s examples so it batches with them: zero image, no
        text (`finish_batch` leaves its tokens 0), no regions or captions, and -1 ("unknown") for `index`,
        `image_id`, `label`, `answer` and `question_type`. The pipeline gives it `example_mask` 0."""
        unknown = np.int32(-1)
        out = {"index": unknown, "image_id": unknown}
        if self.audio_samples:
            out |= {"audio": np.zeros((self.audio_samples,), np.float32), "audio_length": np.int32(0)}
        if self.num_frames or not self.audio_samples:
            out["image"] = np.zeros((*self._frames_shape(), self.image.size, self.image.size, 3), np.uint8)
        if self.max_regions:
            out |= self._regions(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
        if self.sounding_boxes:
            out["sounding_boxes"] = np.zeros((self.num_frames, 2, 4), np.float32)
        if self.task == "image_text" and self.captions == "all":
            out[TEXT_KEY] = np.full((self.max_captions,), None, dtype=object)
            out["caption_mask"] = np.zeros((self.max_captions,), np.int32)
        else:
            out[TEXT_KEY] = _scalar(None)
        if self.task == "image_text":
            out["label"] = unknown
        else:
            out["answer"], out["question_type"] = unknown, unknown
            out["answer_scores"] = np.zeros((len(self.answers),), np.float32)
        return out

    def _frames_shape(self) -> tuple[int, ...]:
        return (self.num_frames,) if self.num_frames else ()

    def _field(self, record: dict, name: str, default=None):
        path = self.fields.get(name, name)
        try:
            return get_field(record, path)
        except KeyError:
            if default is not None:
                return default
            raise

    def _convert(self, record: dict, rng: np.random.Generator) -> dict:
        out = {"index": np.int32(record["index"]), "image_id": np.int32(self._field(record, "image_id", -1))}
        if self.audio_samples:
            out |= self._audio(self._field(record, "audio"), rng)
            if not self.num_frames:
                return out | self._texts_and_targets(record, rng)
        if self.num_frames:
            frames = decode_frames(self._field(record, "image"))
            indices = frame_indices(len(frames), self.num_frames)
            out["image"] = self.image.augment_frames(frames[indices], rng)
            if self.sounding_boxes:
                boxes = np.asarray(self._field(record, "boxes"), np.float32)[indices]
                source = int(self._field(record, "sounding"))
                order = [source] + [k for k in range(boxes.shape[1]) if k != source]
                out["sounding_boxes"] = boxes[:, order]
            out |= self._texts_and_targets(record, rng)
            # drawn last, so a control's clip has the same crop, flip and caption as the kept order's
            out["image"] = self._ordered(out["image"], rng)
            return out
        image = decode_image(self._field(record, "image"))
        if self.max_regions:
            boxes = np.asarray(self._field(record, "boxes", np.zeros((0, 4))), np.float32)
            labels = np.asarray(self._field(record, "labels", np.zeros((0,))), np.int32).reshape(-1)
            out["image"], (boxes, keep) = self.image.augment(image, rng, boxes)
            out |= self._regions(boxes[keep], labels[keep])
        else:
            out["image"] = self.image.augment(image, rng)
        return out | self._texts_and_targets(record, rng)

    def _ordered(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The clip [T, S, S, 3] in `frame_order`."""
        if self.frame_order == "shuffle":
            return clip[rng.permutation(len(clip))]
        if self.frame_order == "single":
            return np.repeat(clip[len(clip) // 2 : len(clip) // 2 + 1], len(clip), axis=0)
        return clip

    def _audio(self, value, rng: np.random.Generator) -> dict:
        wave = np.asarray(value)
        if wave.dtype != np.float32 or wave.ndim != 1:
            raise ValueError(f"expected a float32 waveform [samples], got {wave.dtype} {wave.shape}")
        if wave.size == 0:
            raise ValueError("empty audio")
        start = 0
        if wave.size > self.audio_samples and self.audio_random_window and not self.num_frames:
            start = int(rng.integers(0, wave.size - self.audio_samples + 1))
        kept = wave[start : start + self.audio_samples]
        out = np.zeros((self.audio_samples,), np.float32)
        out[: kept.size] = kept
        return {"audio": out, "audio_length": np.int32(kept.size)}

    def _texts_and_targets(self, record: dict, rng: np.random.Generator) -> dict:
        out = {}
        if self.task == "image_text":
            out |= self._caption_texts(self._field(record, "captions"), rng)
            out["label"] = np.int32(self._field(record, "label", -1))
        else:
            out[TEXT_KEY] = _scalar(self._checked_text(_text(self._field(record, "question"))))
            answer = _text(self._field(record, "answer")).strip()
            answers = [_text(a).strip() for a in self._field(record, "answers", [answer])] or [answer]
            out["answer"] = np.int32(self._answer_ids.get(answer, -1))
            out["answer_scores"] = answer_scores(answers, self._answer_ids)
            out["question_type"] = np.int32(self._type_ids.get(_text(self._field(record, "question_type", "")), -1))
        return out

    def _caption_texts(self, captions, rng) -> dict:
        captions = [_text(c) for c in np.asarray(captions, dtype=object).reshape(-1)]
        if not captions:
            raise ValueError("no captions")
        if self.captions == "random":
            return {TEXT_KEY: _scalar(self._checked_text(captions[int(rng.integers(len(captions)))]))}
        if self.captions == "first":
            return {TEXT_KEY: _scalar(self._checked_text(captions[0]))}
        kept = min(len(captions), self.max_captions)
        texts = np.full((self.max_captions,), None, dtype=object)
        texts[:kept] = [self._checked_text(c) for c in captions[:kept]]
        return {TEXT_KEY: texts, "caption_mask": (np.arange(self.max_captions) < kept).astype(np.int32)}

    def _checked_text(self, text: str) -> str:
        """The text, after the checks that make a record bad (the tokenizer itself only runs per batch)."""
        if not text.strip():
            raise ValueError("empty text")
        text.encode("utf-8")  # a lone surrogate fails here, as this record's fault, not later in the batch
        if self.text_overflow == "error" and (n := self.tokenizer.num_tokens(text)) > self.tokenizer.max_length:
            raise ValueError(f"overlong text: {n} tokens > {self.tokenizer.max_length}: {text[:60]!r}...")
        return text

    def finish_batch(self, batch: dict) -> dict:
        """A batch of `random_map` outputs -> model inputs: normalized float32 images, tokenized text.

        Rows with `example_mask` 0 (placeholders: padding, skipped bad records) get all-zero images and tokens.
        """
        batch = dict(batch)
        real = np.asarray(batch[MASK_KEY]).astype(bool)
        if "image" in batch:
            images = self.image.normalize(batch["image"])
            if not real.all():
                images[~real] = 0
            batch["image"] = images
        texts = batch.pop(TEXT_KEY)
        length = self.tokenizer.max_length
        ids = np.zeros((*texts.shape, length), np.int32)
        mask = np.zeros_like(ids)
        real = real.reshape(-1, *[1] * (texts.ndim - 1))  # [B] or [B, 1] against texts [B] or [B, K]
        if texts.ndim == 2:  # captions="all": absent captions are pad ids with mask 0
            ids[real & ~batch["caption_mask"].astype(bool)] = self.tokenizer.pad_id
        present = real & (texts != None)  # noqa: E711 (elementwise)
        if present.any():
            tokens = self.tokenizer(list(texts[present]))
            ids[present], mask[present] = tokens["input_ids"], tokens["attention_mask"]
        return batch | {"input_ids": ids, "attention_mask": mask}

    def _regions(self, boxes: np.ndarray, labels: np.ndarray) -> dict:
        n = min(len(boxes), self.max_regions)
        out = {
            "boxes": np.zeros((self.max_regions, 4), np.float32),
            "box_labels": np.full((self.max_regions,), -1, np.int32),
            "box_mask": (np.arange(self.max_regions) < n).astype(np.int32),
        }
        out["boxes"][:n], out["box_labels"][:n] = boxes[:n], labels[:n]
        return out


class FinishBatch(grain.transforms.Map):
    """The batch-level half of `ToExample` (its `finish_batch`), as a grain transform: a list of examples (one
    local batch, in row order) or a dict of stacked ones -> the finished batch."""

    def __init__(self, to_example: ToExample):
        self.to_example = to_example

    def map(self, batch: list[dict] | dict) -> dict:
        if not isinstance(batch, dict):
            batch = {k: np.stack([row[k] for row in batch]) for k in batch[0]}
        return self.to_example.finish_batch(batch)
