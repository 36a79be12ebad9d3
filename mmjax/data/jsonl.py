"""Bring your own data: a directory of images plus `train.jsonl` / `val.jsonl` / `test.jsonl`.

One JSON object per line, image paths relative to the directory (absolute paths also work):

    {"image": "images/0001.png", "caption": "a dog on a sofa"}              image-text
    {"image": "images/0001.png", "captions": ["a dog", "a dog on a sofa"]}  image-text, several captions
    {"image": "images/0001.png", "question": "what animal?", "answer": "dog"}             VQA
    {"image": "images/0001.png", "question": "what animal?", "answers": ["dog", "puppy"]} VQA, soft scores

Split names are the file stems that exist (`train`, `val`, `test`). The first line with a "question" decides
the task unless it is given. Preparing copies the image bytes into array_record once; the prepared dataset's
name holds a fingerprint of the JSONL files and of every image's size and modification time, so a rerun reuses
it, and editing a file makes a new one. Bad lines fail naming `file:line`, or are skipped and counted.
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


@dataclasses.dataclass
class JsonlConfig(tfds.core.BuilderConfig):
    path: str = ""
    task: str = "image_text"
    bad_records: str = "fail"
    max_caption_chars: int = 1000


def _lines(file: str):
    """(line number from 1, parsed object or the JSON error) for every non-blank line."""
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, e


def _image_path(root: str, obj) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("image"), str):
        return os.path.join(root, obj["image"])
    return None


def _texts(obj: dict, one: str, many: str) -> list | None:
    if one in obj:
        return [obj[one]]
    return obj.get(many)


class Jsonl(LocalBuilder, skip_registration=True):
    """Image-text or VQA records from JSONL files; `info.metadata["bad_records"]` counts what was skipped."""

    VERSION = VERSION
    name = "mmjax_jsonl"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Image-text data from JSONL files in {self.builder_config.path}.",
            features=features(self.builder_config.task),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        checked, skipped, image_ids = {}, {}, {}
        for split in SPLIT_FILES:
            file = os.path.join(cfg.path, f"{split}.jsonl")
            if os.path.exists(file):
                log = BadRecordLog(cfg.bad_records)
                checked[split] = [
                    (f"{file}:{n}", obj) for n, obj in _lines(file) if self._check(obj, f"{file}:{n}", log)
                ]
                skipped[split] = dict(log.counts)
                for _, obj in checked[split]:
                    image_ids.setdefault(os.path.normpath(_image_path(cfg.path, obj)), len(image_ids))
        self.info.metadata["bad_records"] = skipped
        if cfg.task == "vqa":
            # Answer classes: every answer seen, most frequent first, ties alphabetical: stable across reruns.
            counts = collections.Counter(a for items in checked.values() for _, o in items for a in self._answers(o))
            self.info.metadata["answers"] = sorted(counts, key=lambda a: (-counts[a], a))
        return {split: self._generate_examples(items, image_ids) for split, items in checked.items()}

    @staticmethod
    def _answers(obj: dict) -> list[str]:
        return [a.strip() for a in _texts(obj, "answer", "answers")]

    def _check(self, obj, where: str, log: BadRecordLog) -> bool:
        """Whether a parsed line makes a usable record; if not, reports why (raising under policy 'fail')."""
        cfg = self.builder_config
        if isinstance(obj, json.JSONDecodeError):
            log.report(where, f"malformed JSON: {obj.msg} at column {obj.colno}")
            return False
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
            log.report(where, 'missing field: expected an object with an "image" path')
            return False
        if cfg.task == "image_text":
            fields = {"captions": _texts(obj, "caption", "captions")}
        else:
            fields = {
                "question": _texts(obj, "question", "question"),
                "answers": _texts(obj, "answer", "answers"),
            }
        for name, texts in fields.items():
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                log.report(where, f"missing field: no {name} (string, or list of strings)")
                return False
            if any(not t.strip() for t in texts):
                log.report(where, f"empty text: an empty {name[:-1] if name.endswith('s') else name}")
                return False
            longest = max(len(t) for t in texts)
            if longest > cfg.max_caption_chars:
                log.report(
                    where,
                    f"overlong text: {longest} characters > data.jsonl.max_chars={cfg.max_caption_chars}",
                )
                return False
        path = _image_path(cfg.path, obj)
        if not os.path.isfile(path):
            log.report(where, f"missing image: {path}")
            return False
        try:
            with Image.open(path) as img:
                img.load()  # decodes the pixels: catches truncated files that the header check would pass
        except Exception as e:  # Pillow raises many types for bad files; all mean the same here
            log.report(where, f"corrupt image: {path} ({type(e).__name__}: {e})")
            return False
        return True

    def _generate_examples(self, items, image_ids):
        cfg = self.builder_config
        for key, (where, obj) in enumerate(items):
            path = _image_path(cfg.path, obj)
            with open(path, "rb") as f:
                image = f.read()
            image_id = image_ids[os.path.normpath(path)]
            if cfg.task == "image_text":
                captions = [c.strip() for c in _texts(obj, "caption", "captions")]
                yield key, record("image_text", image, image_id, captions=captions, source=where)
            else:
                answers = self._answers(obj)
                answer = collections.Counter(answers).most_common(1)[0][0]
                question = obj["question"].strip()
                yield (
                    key,
                    record(
                        "vqa",
                        image,
                        image_id,
                        question=question,
                        answer=answer,
                        answers=answers,
                        source=where,
                    ),
                )


def detect_task(path: str) -> str:
    """ "vqa" if the first JSON object of the first split file has a "question", else "image_text"."""
    for split in SPLIT_FILES:
        file = os.path.join(path, f"{split}.jsonl")
        if os.path.exists(file):
            for _, obj in _lines(file):
                if isinstance(obj, dict):
                    return "vqa" if "question" in obj else "image_text"
    raise FileNotFoundError(f"data.path: no {', '.join(f + '.jsonl' for f in SPLIT_FILES)} in {path!r}")


def fingerprint(path: str, *settings) -> str:
    """Hash of the JSONL bytes, each referenced image's size and mtime, and `settings`."""
    digest = hashlib.sha256(repr(settings).encode())
    for split in SPLIT_FILES:
        file = os.path.join(path, f"{split}.jsonl")
        if not os.path.exists(file):
            continue
        with open(file, "rb") as f:
            digest.update(split.encode() + f.read())
        for _, obj in _lines(file):
            image = _image_path(path, obj)
            if image and os.path.exists(image):
                st = os.stat(image)
                digest.update(f"{image}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def jsonl_builder(
    path: str,
    data_dir: str | None = None,
    task: str | None = None,
    bad_records: str = "fail",
    max_chars: int = 1000,
) -> Jsonl:
    """The builder for the JSONL directory `path`; see the module docstring for the format and the rules."""
    path = os.path.abspath(os.path.expanduser(path))
    task = task or detect_task(path)
    check_policy(bad_records)
    settings = (task, bad_records, max_chars)
    config = JsonlConfig(
        name=f"{task}-{fingerprint(path, *settings)}",
        version=VERSION,
        path=path,
        task=task,
        bad_records=bad_records,
        max_caption_chars=max_chars,
    )
    return Jsonl(config=config, data_dir=data_dir)
