"""Sizes that follow from others, derived in this one place.

A key the config states wins; the other side follows it; when both sides are stated and disagree, the error names
both keys. Which keys were stated is read from the raw (file + overrides) dict, not guessed from values.

  data.image_size <-> model.image.image_size      the pipeline feeds the size the image tower was built for
  data.num_frames <-> model.image.num_frames      ... and the clip length a video tower was built for
                                                 (data.frame_order other than keep needs clips)
  data.audio_samples -> model.image | model.audio  audio goes to a tower with a frontend, long enough for it
                                                 (model.audio: the soundtrack beside model.image's clip)
  data.tokenizer.max_length  <= model.text.max_length (None: equal to it; longer: the unstated table follows)
  model.text.vocab_size      >= the tokenizer's vocabulary (unset: equal to it)
  model.text.pool, eos_token_id  pool='argmax' (CLIP's: the end token has the highest id), unless stated, becomes
                                 'eos' at the tokenizer's end token when another token has a higher id (the word
                                 lists), or at a stated eos_token_id; pool='eos' without one takes the tokenizer's
  data.task                  the record layout the task reads (Task.DATA_TASK), unless stated
  evals.*.batch_size, every, at_end, prefix   from batch_size, eval_every and the entry's name
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from mmjax.config.errors import ConfigError
from mmjax.config.schema import task_class


def stated(raw: Mapping, key: str) -> bool:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def derive(config: dict, raw: Mapping) -> dict:
    if not _audio(config):
        _image_size(config, raw)
    _num_frames(config, raw)
    _text_sizes(config, raw)
    data_task = task_class(config["task"]).DATA_TASK
    if data_task and not stated(raw, "data.task"):
        config["data"]["task"] = data_task
    for name, entry in config["evals"].items():
        if entry["batch_size"] is None:
            entry["batch_size"] = config["batch_size"]
        if entry["every"] is None:
            entry["every"] = config["eval_every"]
        if entry["at_end"] is None:
            entry["at_end"] = entry["every"] > 0
        if entry["prefix"] is None:
            entry["prefix"] = "" if name == entry["type"] else name
    return config


_HOP = 160  # samples per frame of both frontend presets (10 ms at 16 kHz)


def _audio(config: dict) -> bool:
    """Whether the visual slot holds audio; checks that the data and the towers agree on it, and that the tower
    fed the waveforms (model.audio beside a video tower, else model.image) sees every sample of them."""
    model, data = config.get("model", {}), config["data"]
    image, audio = model.get("image"), model.get("audio")
    samples = data["audio_samples"]
    tower = image["name"] if image else None
    from mmjax.data.schema import AUDIO_SOURCES  # on use: the config package stays light to import

    if data["source"] in AUDIO_SOURCES and not samples:
        raise ConfigError(
            f"config key 'data.audio_samples' must be > 0 with data.source={data['source']!r}: the waveform length "
            "in batches (e.g. 16000 for 1 s at 16 kHz)"
        )
    if audio:  # a clip and its soundtrack, each to its own tower: model.image takes the clip (_num_frames checks)
        if "frontend" not in audio:
            raise ConfigError(
                f"config key 'model.audio.name' is {audio['name']!r}, not an audio tower; choose ast, whisper or "
                "spectrogram_cnn"
            )
        if not samples:
            raise ConfigError(
                "config key 'data.audio_samples' must be > 0 with model.audio set: the audio tower's input"
            )
        _audio_tower(audio, "model.audio", data)
        return False
    if not image or "frontend" not in image:
        # a video tower beside the soundtrack reads the clip alone (the video control of audio-visual models)
        if samples and image and "num_frames" not in image:
            raise ConfigError(
                f"config key 'data.audio_samples' is {samples} but model.image ({tower!r}) is not an audio tower; "
                "choose ast, whisper or spectrogram_cnn (or a video tower, for a clip with its soundtrack)"
            )
        return False
    if not samples:
        return False  # an audio tower fed spectrograms by the user's own code
    _audio_tower(image, "model.image", data)
    return True


def _audio_tower(tower: dict, key: str, data: dict) -> None:
    """The audio tower at config `key` computes its spectrogram from the 16 kHz waveforms and sees all of them."""
    samples = data["audio_samples"]
    if data["sample_rate"] != 16_000:
        raise ConfigError(
            f"config key 'data.sample_rate' is {data['sample_rate']} but the audio towers' frontends take 16000 Hz"
        )
    if tower["frontend"] is None:
        raise ConfigError(
            f"config key '{key}.frontend' must be set ('ast' or 'whisper'): batches hold waveforms "
            f"(data.audio_samples={samples}) and {tower['name']!r} would read them as spectrograms"
        )
    frames = (samples - 400) // _HOP + 1  # frames of 25 ms every 10 ms, as AST's preset frames them
    if "max_length" in tower and not tower.get("interpolate_pos_embed") and frames > tower["max_length"]:
        raise ConfigError(
            f"config key 'data.audio_samples' ({samples}) gives {frames} frames, more than "
            f"'{key}.max_length' ({tower['max_length']}): the tower would cut the audio"
        )
    if "max_positions" in tower and samples > 2 * tower["max_positions"] * _HOP:
        raise ConfigError(
            f"config key 'data.audio_samples' ({samples}) is longer than the {2 * tower['max_positions'] * _HOP} "
            f"samples '{key}.max_positions' ({tower['max_positions']}) covers: the tower would cut the audio"
        )


def _num_frames(config: dict, raw: Mapping) -> None:
    """data.num_frames <-> model.image.num_frames: a video tower is fed clips of the length it was built for."""
    _clip_length(config, raw)
    data = config["data"]
    if data["frame_order"] != "keep" and not data["num_frames"]:
        raise ConfigError(
            f"config key 'data.frame_order' is {data['frame_order']!r} but there are no clips to reorder "
            "(data.num_frames is unset and model.image is not a video tower)"
        )


def _clip_length(config: dict, raw: Mapping) -> None:
    image, data = config.get("model", {}).get("image"), config["data"]
    if not image or "num_frames" not in image:
        if data["num_frames"] and image:
            raise ConfigError(
                f"config key 'data.num_frames' is {data['num_frames']} but model.image ({image['name']!r}) takes "
                "still images; choose a video tower (frame_vit, video_vit, ...) or unset data.num_frames"
            )
        return
    if image["num_frames"] is None:  # a tower that takes any clip length (video_resnet): the data says how long
        if not data["num_frames"]:
            raise ConfigError(
                f"config key 'data.num_frames' must be set: model.image ({image['name']!r}) takes clips of any length"
            )
        image["num_frames"] = data["num_frames"]
    if stated(raw, "data.num_frames") and data["num_frames"] != image["num_frames"]:
        raise ConfigError(
            f"config keys 'data.num_frames' ({data['num_frames']}) and 'model.image.num_frames' "
            f"({image['num_frames']}) disagree; set both to one value (or only model.image.num_frames)"
        )
    data["num_frames"] = image["num_frames"]
    source = data["source"]
    if source in ("moving_shapes", "sounding_shapes") and data["num_frames"] > data[source]["num_frames"]:
        raise ConfigError(
            f"config key 'model.image.num_frames' ({data['num_frames']}) is longer than the generated clips "
            f"('data.{source}.num_frames' = {data[source]['num_frames']})"
        )


def _image_size(config: dict, raw: Mapping) -> None:
    image, data = config["model"].get("image"), config["data"]
    if not image or "image_size" not in image:
        if image and data["image_size"] is None:
            raise ConfigError(
                f"config key 'data.image_size' must be set: model.image ({image['name']!r}) takes any image size"
            )
        return
    if stated(raw, "data.image_size") and stated(raw, "model.image.image_size"):
        if data["image_size"] != image["image_size"]:
            raise ConfigError(
                f"config keys 'data.image_size' ({data['image_size']}) and 'model.image.image_size' "
                f"({image['image_size']}) disagree; set both to one value (or only model.image.image_size)"
            )
    elif stated(raw, "data.image_size"):
        image["image_size"] = data["image_size"]
    else:
        data["image_size"] = image["image_size"]


@functools.lru_cache(maxsize=16)
def _tokenizer_ids(kind: str, path: str | None, max_length: int, lowercase: bool) -> tuple[int, int | None]:
    """The tokenizer's vocabulary size and end token; cached, since sweeps and tests resolve the same config many
    times."""
    from mmjax.data import tokenizer_from_config

    config = {"kind": kind, "path": path, "max_length": max_length, "lowercase": lowercase}
    tok = tokenizer_from_config(config)
    return tok.vocab_size, tok.end_id


def _text_sizes(config: dict, raw: Mapping) -> None:
    text, tok = config["model"].get("text"), config["data"]["tokenizer"]
    if tok["max_length"] is None:
        if not text or "max_length" not in text:
            raise ConfigError("config key 'data.tokenizer.max_length' must be set: no text tower fixes it")
        tok["max_length"] = text["max_length"]
    elif text and "max_length" in text and tok["max_length"] > text["max_length"]:
        if not stated(raw, "model.text.max_length"):  # the stated side wins: the position table follows
            text["max_length"] = tok["max_length"]
            return _vocab(config, raw)
        raise ConfigError(
            f"config key 'data.tokenizer.max_length' ({tok['max_length']}) exceeds 'model.text.max_length' "
            f"({text['max_length']}), the text tower's position table"
        )
    _vocab(config, raw)


def _vocab(config: dict, raw: Mapping) -> None:
    text, tok = config["model"].get("text"), config["data"]["tokenizer"]
    if not text or "vocab_size" not in text:
        return
    try:
        ids, end = _tokenizer_ids(tok["kind"], tok["path"], tok["max_length"], tok["lowercase"])
    except (ValueError, OSError) as e:
        raise ConfigError(f"config key 'data.tokenizer': {e}") from None
    _pool_at_end(text, raw, ids, end, tok["kind"])
    if not stated(raw, "model.text.vocab_size"):
        text["vocab_size"] = ids
    elif text["vocab_size"] < ids:
        raise ConfigError(
            f"config key 'model.text.vocab_size' ({text['vocab_size']}) is smaller than the {ids} ids of the "
            f"tokenizer 'data.tokenizer' describes (kind {tok['kind']!r}): higher ids would have no embedding"
        )


def _pool_at_end(text: dict, raw: Mapping, ids: int, end: int | None, kind: str) -> None:
    """A causal tower pooled by 'argmax' reads the highest id, which is the end token only in CLIP's vocabulary.
    Under any other tokenizer it is some word mid-text, and the pooled vector never sees the words after it."""
    pool, eos = text.get("pool"), text.get("eos_token_id")
    if pool not in ("argmax", "eos"):
        return
    if eos is not None and not 0 <= eos < ids:
        raise ConfigError(
            f"config key 'model.text.eos_token_id' ({eos}) is not an id of the {kind!r} tokenizer of "
            f"'data.tokenizer' (0 to {ids - 1})"
        )
    if pool == "eos":
        if eos is None and end is None:
            raise ConfigError(
                f"config key 'model.text.pool' is 'eos', but 'model.text.eos_token_id' is unset and the {kind!r} "
                "tokenizer of 'data.tokenizer' adds no end token"
            )
        text["eos_token_id"] = end if eos is None else eos
        return
    if stated(raw, "model.text.pool"):
        # kept: a run saved before pooling followed the tokenizer was trained this way, and must load as it was
        if end is not None and end != ids - 1:
            logging.getLogger(__name__).warning(
                "config key 'model.text.pool' is 'argmax', but the %r tokenizer ends a text with id %d of %d: "
                "the pooled token is a word mid-text; pool='eos' reads the whole text",
                kind,
                end,
                ids,
            )
        return
    if eos is not None:  # an end token named, as transformers' CLIP reads any eos_token_id but the legacy 2
        text["pool"] = "eos"
    elif end is not None and end != ids - 1:
        text["pool"], text["eos_token_id"] = "eos", end
