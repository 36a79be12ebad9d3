"""The JSONL builders of lines whose files are decoded when preparing: clips (`JsonlVideo`, with their soundtrack
when one is asked for) and sounds (`JsonlAudio`). The line format and its rules are `mmjax.data.jsonl`'s."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import media
from mmjax.data.builders import record
from mmjax.data.jsonl import Jsonl


class _Decoded(Jsonl, skip_registration=True):
    """Lines whose files are decoded when preparing (video, audio): the record stores the decoded arrays, the
    medium's under its name with `<medium>_id`, in the image-text layout's other fields."""

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict(
            {
                **self._array_features(),
                f"{self.MEDIA}_id": np.int64,
                "captions": tfds.features.Sequence(tfds.features.Text()),
                "label": np.int64,
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                "source": tfds.features.Text(),
            }
        )

    def _array_features(self) -> dict[str, tfds.features.Tensor]:
        """The decoded arrays' features, by record field."""
        raise NotImplementedError

    def _read(self, path: str) -> dict[str, np.ndarray]:
        """The decoded file, by record field; raises `media.MediaError`."""
        raise NotImplementedError

    def _download_and_prepare(self, dl_manager, download_config):
        # `_check` decodes every file before anything is written (a corrupt one is a bad record), and decoding is
        # most of the cost of preparing: the arrays wait in a scratch folder until `_generate_examples` stores
        # them, rather than in memory (a dataset of clips outgrows it) or being decoded twice. On a local data_dir
        # the folder lies inside the dataset's own `incomplete` folder; it is removed however preparing ends.
        local = "://" not in os.fspath(self.data_dir)
        with tempfile.TemporaryDirectory(prefix="decoded-", dir=os.fspath(self.data_dir) if local else None) as d:
            self._scratch, self._decoded = d, {}
            return super()._download_and_prepare(dl_manager, download_config)

    def _decode_problem(self, path: str) -> str | None:
        key = os.path.normpath(path)
        if key not in self._decoded:  # a file named on several lines is decoded once
            try:
                arrays = self._read(path)
            except media.MediaError as e:
                self._decoded[key] = e
            else:
                self._decoded[key] = os.path.join(self._scratch, f"{len(self._decoded)}.npz")
                np.savez(self._decoded[key], **arrays)
        error = self._decoded[key]
        if not isinstance(error, media.MediaError):
            return None
        if error.kind in ("too short", "no audio"):
            return f"{error.kind}: {error}"
        return f"{error.kind} {self.MEDIA}: {error}"

    def _content(self, path: str) -> dict[str, np.ndarray]:
        with np.load(self._decoded[os.path.normpath(path)]) as arrays:
            return dict(arrays)

    def _record(self, content, media_id: int, **fields) -> dict:
        out = record("image_text", content.pop(self.MEDIA), media_id, **fields)
        out[self.MEDIA], out[f"{self.MEDIA}_id"] = out.pop("image"), out.pop("image_id")
        return out | content


def _waveform() -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=(None,), dtype=np.float32)


class JsonlVideo(_Decoded, skip_registration=True):
    """Video-text records: `video` uint8 [T, S, S, 3], min_frames <= T <= max_frames (see `mmjax.data.jsonl`), and
    with `with_audio` the file's `audio` over the same time, float32 at `sample_rate` Hz."""

    name = "mmjax_jsonl_video"
    MEDIA = "video"
    # the pipeline's visual slot reads the clip (`data.num_frames` says it is one), its audio slot `audio`
    FIELDS = {"image": "video", "image_id": "video_id"}

    def _info(self) -> tfds.core.DatasetInfo:
        info = super()._info()
        if self.builder_config.with_audio:
            info.metadata["sample_rate"] = self.builder_config.sample_rate
        return info

    def _array_features(self) -> dict[str, tfds.features.Tensor]:
        side = self.builder_config.image_size
        frames = tfds.features.Tensor(
            shape=(None, side, side, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
        )
        return {"video": frames} | ({"audio": _waveform()} if self.builder_config.with_audio else {})

    def _read(self, path: str) -> dict[str, np.ndarray]:
        cfg = self.builder_config
        if not cfg.with_audio:
            return {"video": media.read_clip(path, cfg.max_frames, size=cfg.image_size, min_frames=cfg.min_frames)}
        clip, audio = media.read_clip_and_soundtrack(
            path, cfg.max_frames, cfg.sample_rate, size=cfg.image_size, min_frames=cfg.min_frames
        )
        return {"video": clip, "audio": audio}


class JsonlAudio(_Decoded, skip_registration=True):
    """Audio-text records: `audio` float32 [samples] at `sample_rate` Hz, which `info.metadata` also records."""

    name = "mmjax_jsonl_audio"
    MEDIA = "audio"
    # audio examples have no image; the pipeline reads the `audio` field by its own name
    FIELDS = {"image_id": "audio_id"}

    def _info(self) -> tfds.core.DatasetInfo:
        info = super()._info()
        info.metadata["sample_rate"] = self.builder_config.sample_rate
        return info

    def _array_features(self) -> dict[str, tfds.features.Tensor]:
        return {"audio": _waveform()}

    def _read(self, path: str) -> dict[str, np.ndarray]:
        cfg = self.builder_config
        return {"audio": media.read_audio(path, cfg.sample_rate, min_seconds=cfg.min_audio_seconds)}


BUILDERS = {"image": Jsonl, "video": JsonlVideo, "audio": JsonlAudio}
