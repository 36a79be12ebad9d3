"""Bring your own data: a directory of images, videos or sounds plus `train.jsonl` / `val.jsonl` / `test.jsonl`.

One JSON object per line, media paths relative to the directory (absolute paths also work):

    {"image": "images/0001.png", "caption": "a dog on a sofa"}              image-text
    {"image": "images/0001.png", "captions": ["a dog", "a dog on a sofa"]}  image-text, several captions
    {"image": "images/0001.png", "question": "what animal?", "answer": "dog"}             VQA
    {"image": "images/0001.png", "question": "what animal?", "answers": ["dog", "puppy"]} VQA, soft scores
    {"video": "clips/0001.mp4", "caption": "a dog jumps"}                   video-text (any file FFmpeg reads)
    {"video": "clips/0001/", "label": "jumping"}                            a folder of frame images, a class
    {"audio": "sounds/0001.wav", "caption": "a dog barks", "label": 3}      audio-text (any file libsndfile reads)

Split names are the file stems that exist (`train`, `val`, `test`). The first JSON object of the first split file
decides the media of the whole directory ("video", "audio", else "image"): a line naming another medium is a bad
record ("wrong media"). It also decides the task unless it is given: "vqa" when it has a "question"; videos and
sounds have captions and labels only (image_text).

Labels (image_text): `"label"` is a class id (an int >= 0) or a class name (a string). The first labelled line
decides which for the directory; a line with the other kind is a bad record ("mixed labels"). Class names over all
splits, sorted, become `info.metadata["classes"]` (index = class id; what zero-shot and classification evaluators
read) and each record's `label` is its name's index; -1 without a label. Every record needs text: a line with a
class name and no caption is captioned with the name; a line with neither captions nor a class name (a class id
alone) is a bad record ("missing field").

Stored records (image_text layout of `mmjax.data.builders`, `source` = `file:line`, no boxes):
  image: `image` (the file's bytes), `image_id`, `captions`, `label`, `boxes`, `labels`, `source`.
  video: `video` uint8 [T, S, S, 3], `video_id` instead of `image`, `image_id`. Every frame of the clip (of a
    folder: its image files in sorted name order, so number them with leading zeros; hidden files are not frames),
    spread uniformly down to at most `max_frames`, each frame its largest centred square resized to S x S
    (`image_size`). `FIELDS` points the pipeline's visual slot at `video`, as for `moving_shapes`.
  audio: `audio` float32 [samples] in [-1, 1], mono, at `sample_rate` Hz (resampled), `audio_id`; no image.
  video with its soundtrack (`with_audio`, asked for by `data.audio_samples`): the video's fields, and `audio` as
    above, the file's audio track over the time the clip shows (`media.read_clip_and_soundtrack`). A file with no
    audio track ("no audio"; a folder of frames has none) or one that stops early ("too short") is a bad record.
Clips shorter than `min_frames` (the pipeline's `data.num_frames`) and sounds shorter than `min_audio_seconds` are
bad records ("too short"), as are files that do not decode ("corrupt video"/"corrupt audio") or hold nothing
("empty ...").

Preparing decodes every file once and stores the result in array_record; the prepared dataset's name holds a
fingerprint of the JSONL files, of every media file's size and modification time and of the settings that change
what is stored, so a rerun reuses it and editing a file makes a new one. Every line is checked (video and audio
decoded) before anything is written: bad lines fail naming `file:line`, or are skipped and counted per reason in
`info.metadata["bad_records"]`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os

import tensorflow_datasets as tfds
from PIL import Image

from mmjax.data.builders import VERSION, LocalBuilder, features, record
from mmjax.data.errors import BadRecordLog, check_policy

SPLIT_FILES = ("train", "val", "test")
MEDIA = ("image", "video", "audio")
# Shorter sounds give the spectrogram frontends (25 ms windows) no frame at all.
MIN_AUDIO_SECONDS = 0.025


@dataclasses.dataclass
class JsonlConfig(tfds.core.BuilderConfig):
    path: str = ""
    task: str = "image_text"
    bad_records: str = "fail"
    max_caption_chars: int = 1000
    image_size: int = 0  # video: side S of the stored frames
    max_frames: int = 64  # video: frames stored per clip, at most
    min_frames: int = 1  # video: shorter clips are bad records
    sample_rate: int = 16_000  # audio: Hz of the stored waveforms
    with_audio: bool = False  # video: store each file's soundtrack too
    min_audio_seconds: float = MIN_AUDIO_SECONDS  # audio: shorter sounds are bad records


def _lines(file: str):
    """(line number from 1, parsed object or the JSON error) for every non-blank line."""
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, e


def _split_files(path: str):
    """(split, file) for each split file that exists, in SPLIT_FILES order."""
    for split in SPLIT_FILES:
        file = os.path.join(path, f"{split}.jsonl")
        if os.path.exists(file):
            yield split, file


def _media_path(root: str, obj, kind: str) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get(kind), str):
        return os.path.join(root, obj[kind])
    return None


def _texts(obj: dict, one: str, many: str) -> list | None:
    if one in obj:
        return [obj[one]]
    return obj.get(many)


def _is_label(value) -> bool:
    """A usable label: a class id (int >= 0; JSON true/false are not ids) or a class name (non-blank string)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _first_label(path: str) -> tuple[str, bool] | None:
    """(`file:line`, whether it is a class name) of the first line with a usable label; None if no line has one."""
    for _, file in _split_files(path):
        for n, obj in _lines(file):
            if isinstance(obj, dict) and _is_label(obj.get("label")):
                return f"{file}:{n}", isinstance(obj["label"], str)
    return None


def _a(kind: str) -> str:
    """'an "image"', 'a "video"': a media field named in a message."""
    return f'{"an" if kind[0] in "aeiou" else "a"} "{kind}"'


def _captions(obj: dict) -> list | None:
    """The line's captions as written; a class name stands in when there are none."""
    texts = _texts(obj, "caption", "captions")
    if texts is None and isinstance(obj.get("label"), str):
        return [obj["label"]]
    return texts


class Jsonl(LocalBuilder, skip_registration=True):
    """Image-text or VQA records from JSONL files of image lines; `info.metadata["bad_records"]` counts what was
    skipped. `mmjax.data.jsonl_media` reads the other media."""

    VERSION = VERSION
    name = "mmjax_jsonl"
    MEDIA = "image"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.MEDIA.capitalize()}-text data from JSONL files in {self.builder_config.path}.",
            features=self._features(),
            metadata=tfds.core.MetadataDict(),
        )

    def _features(self) -> tfds.features.FeaturesDict:
        return features(self.builder_config.task)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        self._labelled = _first_label(cfg.path)
        checked, skipped, media_ids = {}, {}, {}
        for split, file in _split_files(cfg.path):
            log = BadRecordLog(cfg.bad_records)
            checked[split] = [(f"{file}:{n}", obj) for n, obj in _lines(file) if self._check(obj, f"{file}:{n}", log)]
            skipped[split] = dict(log.counts)
            for _, obj in checked[split]:
                media_ids.setdefault(os.path.normpath(self._path(obj)), len(media_ids))
        self.info.metadata["bad_records"] = skipped
        classes = {}
        if cfg.task == "vqa":
            # Answer classes: every answer seen, most frequent first, ties alphabetical: stable across reruns.
            counts = collections.Counter(a for items in checked.values() for _, o in items for a in self._answers(o))
            self.info.metadata["answers"] = sorted(counts, key=lambda a: (-counts[a], a))
        elif self._labelled and self._labelled[1]:
            names = {o["label"].strip() for items in checked.values() for _, o in items if "label" in o}
            self.info.metadata["classes"] = sorted(names)
            classes = {name: i for i, name in enumerate(sorted(names))}
        return {split: self._generate_examples(items, media_ids, classes) for split, items in checked.items()}

    def _path(self, obj) -> str | None:
        return _media_path(self.builder_config.path, obj, self.MEDIA)

    @staticmethod
    def _answers(obj: dict) -> list[str]:
        return [a.strip() for a in _texts(obj, "answer", "answers")]

    def _check(self, obj, where: str, log: BadRecordLog) -> bool:
        """Whether a parsed line makes a usable record; if not, reports why (raising under policy 'fail')."""
        if isinstance(obj, json.JSONDecodeError):
            log.report(where, f"malformed JSON: {obj.msg} at column {obj.colno}")
            return False
        problem = self._field_problem(obj)
        if problem is None:
            path = self._path(obj)
            if not (os.path.isfile(path) if self.MEDIA == "image" else os.path.exists(path)):
                problem = f"missing {self.MEDIA}: {path}"
            else:
                problem = self._decode_problem(path)
        if problem is not None:
            log.report(where, problem)
            return False
        return True

    def _field_problem(self, obj) -> str | None:
        """What is wrong with the line's fields (the media path, texts, label), or None."""
        cfg = self.builder_config
        named = [m for m in MEDIA if isinstance(obj, dict) and isinstance(obj.get(m), str)]
        if named and self.MEDIA not in named:
            return f"wrong media: {_a(named[0])} path where the first line of the folder has {_a(self.MEDIA)}"
        if not named:
            return f"missing field: expected an object with {_a(self.MEDIA)} path"
        if len(named) > 1:
            return f"wrong media: {' and '.join(named)} paths on one line; the folder's lines name one {self.MEDIA}"
        if cfg.task == "image_text":
            problem = self._label_problem(obj)
            if problem:
                return problem
            fields = {"captions": _captions(obj)}
        else:
            fields = {
                "question": _texts(obj, "question", "question"),
                "answers": _texts(obj, "answer", "answers"),
            }
        for name, texts in fields.items():
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                if name == "captions":
                    return 'missing field: no captions (string, or list of strings), nor a class-name "label"'
                return f"missing field: no {name} (string, or list of strings)"
            if any(not t.strip() for t in texts):
                return f"empty text: an empty {name[:-1] if name.endswith('s') else name}"
            longest = max(len(t) for t in texts)
            if longest > cfg.max_caption_chars:
                return f"overlong text: {longest} characters > data.max_text_chars={cfg.max_caption_chars}"
        return None

    def _label_problem(self, obj: dict) -> str | None:
        if "label" not in obj:
            return None
        label = obj["label"]
        if not _is_label(label):
            return f"bad label: expected a class id (int >= 0) or a class name (string), got {label!r}"
        first, by_name = self._labelled  # a usable label exists, so the first one was found
        if isinstance(label, str) != by_name:
            kinds = {True: "class name", False: "class id"}
            return f"mixed labels: {label!r} is a {kinds[not by_name]}, but {first} has a {kinds[by_name]}"
        return None

    def _decode_problem(self, path: str) -> str | None:
        """Why the file at `path` cannot be used, or None; decodes it fully (catches truncated files)."""
        try:
            with Image.open(path) as img:
                img.load()  # decodes the pixels: catches truncated files that the header check would pass
        except Exception as e:  # Pillow raises many types for bad files; all mean the same here
            return f"corrupt image: {path} ({type(e).__name__}: {e})"
        return None

    def _content(self, path: str):
        """What the record stores for the file at `path`: for images, its bytes (the pipeline decodes them)."""
        with open(path, "rb") as f:
            return f.read()

    def _record(self, content, media_id: int, **fields) -> dict:
        return record("image_text", content, media_id, **fields)

    def _generate_examples(self, items, media_ids, classes):
        cfg = self.builder_config
        for key, (where, obj) in enumerate(items):
            path = self._path(obj)
            content, media_id = self._content(path), media_ids[os.path.normpath(path)]
            if cfg.task == "image_text":
                captions = [c.strip() for c in _captions(obj)]
                label = obj.get("label", -1)
                label = classes[label.strip()] if isinstance(label, str) else label
                yield key, self._record(content, media_id, captions=captions, label=label, source=where)
            else:
                answers = self._answers(obj)
                answer = collections.Counter(answers).most_common(1)[0][0]
                question = obj["question"].strip()
                yield (
                    key,
                    record(
                        "vqa",
                        content,
                        media_id,
                        question=question,
                        answer=answer,
                        answers=answers,
                        source=where,
                    ),
                )


def _first_object(path: str) -> dict:
    """The first JSON object of the first split file: it decides the directory's media and task."""
    for _, file in _split_files(path):
        for _, obj in _lines(file):
            if isinstance(obj, dict):
                return obj
    if not any(_split_files(path)):
        raise FileNotFoundError(f"data.path: no {', '.join(f + '.jsonl' for f in SPLIT_FILES)} in {path!r}")
    return {}


def detect_task(path: str) -> str:
    """ "vqa" if the first JSON object of the first split file has a "question", else "image_text"."""
    return "vqa" if "question" in _first_object(path) else "image_text"


def detect_media(path: str) -> str:
    """The medium the first JSON object of the first split file names: "video", "audio", else "image"."""
    first = _first_object(path)
    return next((m for m in ("video", "audio") if m in first), "image")


def _media_files(path: str) -> list[str]:
    """The files whose bytes make the stored content of media `path`: itself, or a frames folder's frames."""
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in sorted(os.listdir(path)) if not n.startswith(".")]
    return [path] if os.path.exists(path) else []


def fingerprint(path: str, *settings, kind: str = "image") -> str:
    """Hash of the JSONL bytes, each referenced `kind` file's size and mtime (a frames folder: each frame's), and
    `settings`."""
    digest = hashlib.sha256(repr(settings).encode())
    for split, file in _split_files(path):
        with open(file, "rb") as f:
            digest.update(split.encode() + f.read())
        for _, obj in _lines(file):
            item = _media_path(path, obj, kind)
            for name in _media_files(item) if item else ():
                st = os.stat(name)
                digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def jsonl_builder(
    path: str,
    data_dir: str | None = None,
    task: str | None = None,
    bad_records: str = "fail",
    max_chars: int = 1000,
    *,
    image_size: int | None = None,
    min_frames: int | None = None,
    max_frames: int = 64,
    sample_rate: int = 16_000,
    min_audio_seconds: float = MIN_AUDIO_SECONDS,
    audio: bool = False,
) -> Jsonl:
    """The builder for the JSONL directory `path`; see the module docstring for the format and the rules.

    Video directories need `image_size` (data.image_size) and `min_frames` (data.num_frames: the clip length the
    model takes); image directories refuse `min_frames`. `audio` (data.audio_samples > 0) stores the videos'
    soundtracks; image directories refuse it. Errors name the config key."""
    from mmjax.data.jsonl_media import BUILDERS  # they build on `Jsonl`: imported here, not above, to avoid a cycle

    path = os.path.abspath(os.path.expanduser(path))
    kind = detect_media(path)
    task = task or detect_task(path)
    check_policy(bad_records)
    extra = {}  # the settings that change what is stored besides these (an image's size does not: bytes are kept)
    if kind == "image" and min_frames:
        raise ValueError(
            f"data.num_frames: clips of {min_frames} frames asked for, but the lines of {path} name images"
        )
    if kind == "image" and audio:
        raise ValueError(
            f"data.audio_samples: audio asked for, but the lines of {path} name images (sound comes from audio files "
            "or from videos' soundtracks)"
        )
    if kind != "image" and task != "image_text":
        raise ValueError(f"data.task: {kind} lines have captions and labels (image_text), not {task!r} ({path})")
    if kind == "video":
        if not min_frames:
            raise ValueError(
                f"data.num_frames: the lines of {path} name videos; a video tower (model.image.num_frames) or "
                "data.num_frames must say how many frames the model takes"
            )
        if not image_size:
            raise ValueError(f"data.image_size: must be set: the frames of the videos in {path} are resized to it")
        if min_frames > max_frames:
            raise ValueError(f"data.num_frames ({min_frames}) is more than data.max_frames ({max_frames}) (per clip)")
        extra = dict(image_size=image_size, max_frames=max_frames, min_frames=min_frames)
        if audio:  # only then: a folder prepared without sound keeps its fingerprint
            extra |= dict(with_audio=True, sample_rate=sample_rate)
    elif kind == "audio":
        extra = dict(sample_rate=sample_rate, min_audio_seconds=min_audio_seconds)
    settings = (task, bad_records, max_chars) + ((kind, *extra.values()) if extra else ())
    fp = fingerprint(path, *settings, kind=kind)
    config = JsonlConfig(
        name=f"{task}-{fp}" if kind == "image" else f"{kind}-{fp}",
        version=VERSION,
        path=path,
        task=task,
        bad_records=bad_records,
        max_caption_chars=max_chars,
        **extra,
    )
    return BUILDERS[kind](config=config, data_dir=data_dir)
