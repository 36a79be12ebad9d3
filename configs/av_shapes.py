"""Audio-visual learning on `sounding_shapes`: two shapes make the same motion, one of them sounds.

    mmjax train --config configs/av_shapes.py --workdir runs/av                            # fused label, early
    mmjax train --config configs/av_shapes.py:fusion=bottleneck --workdir runs/av_mbt      # MBT bottlenecks
    mmjax train --config configs/av_shapes.py:modality=video --workdir runs/av_video       # the video control
    mmjax train --config configs/av_shapes.py:modality=audio --workdir runs/av_audio       # the audio control
    mmjax train --config configs/av_shapes.py:tower=video_vit --workdir runs/av_vit        # tubelet tokens
    mmjax sweep --config configs/av_shapes.py --workdir runs/av_fusions                    # the four fusions
    mmjax train --config configs/av_shapes.py:task=correspondence --workdir runs/avc       # does it sound like this?
    mmjax train --config configs/av_shapes.py:task=localization --workdir runs/avl         # where is the sound?
    mmjax train --config configs/av_shapes.py:tiny --workdir /tmp/av
    mmjax train --config configs/av_shapes.py --workdir runs/mine --config.data.source=jsonl \
        --config.data.path=DIR --config.data.label_field=label --config.model.num_classes=N    # your clips

Batches hold an 8-frame 32 px clip and its 1 s soundtrack (8 frames at 8 fps = 16,000 samples). The class is
the sounding shape's size (`data.label_field='fused_label'`, small or large): the clip shows two shapes of
different sizes doing the same thing, the sound says which one (its pitch is the colour) but nothing of its
size, so each modality alone is at 1/2 and only a model that joins them can do better (see
mmjax/data/sounding_shapes.py). `modality=video|audio` trains one tower alone on the same batches.

The video tower is video_shapes' `frame_vit` (a ViT per frame and a temporal transformer), the audio tower
audio_digits' AST (98 frames of 64 mel bins, computed in the model step); `fusion=` joins them through
`mmjax.fusion` as vqa_shapes' fusion ablation does for an image and a text.

`task=correspondence` embeds the clip and the soundtrack apart (`mmjax.models.AudioVisual`) and contrasts each clip
with the batch's other soundtracks and with its own rolled by half its length; the evaluator reports accuracy
against each kind of negative apart. `task=localization` scores a clip against a soundtrack by the best-matching
patch of each frame (`mmjax.models.SoundLocalizer`, 4 px patches: an 8 x 8 heatmap), trained without boxes; the
evaluator plays the pointing game against the sounding shape's box, beside the frame-centre baseline. The same
scores make it a correspondence model too (AVOL-Net's max-pooled score), evaluated as task=correspondence is.

Your own clips: a JSONL folder of `{"video": "clips/1.mp4", "label": "dog"}` lines (mmjax/data/jsonl.py); with
`data.audio_samples` set, as here, each file's soundtrack is stored with its frames, over the same time.
"""

import pathlib
import sys

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from common import VIDEO_TOWERS, audio_tower, deep_update, parse_arg, tiny_schedule, video_tower  # noqa: E402

VARIANTS = {
    "tiny": "seconds on a CPU (64 clips, small towers)",
    "task=classification|correspondence|localization": "the fused label (the sounding shape's size) from the clip "
    "and its soundtrack (default), whether a soundtrack belongs to a clip, or where in the frame it comes from",
    "fusion=early|late|mid|bottleneck": "modality=both: how the towers meet (default early)",
    "combine=product|concat|sum|gate": "fusion=late: how the two pooled vectors meet (default product; concat and "
    "sum are additive, the control that cannot bind a size to a sound)",
    "modality=both|video|audio": "both towers through the fusion (default), or one tower alone (the controls)",
    "tower=" + "|".join(VIDEO_TOWERS): "the video tower (default frame_vit: one token per frame; the tubelet "
    "transformers give the fusion a token per tubelet); task=localization takes frame_vit's patches",
}
# combine=product: the label is an XOR of what each tower sees (which shape is large; which one sounds), and an
# additive combination followed by the linear head scores each tower apart, which an XOR defeats; the product lets
# the audio vector gate the video's features (e.g. "the red shape's area" times "red sounds").
ARGS = {"task": "classification", "fusion": "early", "modality": "both", "tower": "frame_vit", "combine": "product"}
TASKS = ("classification", "correspondence", "localization")
FUSION_FIELDS = {
    "early": {},
    "late": {"width": 128},  # and the `combine=` argument
    "mid": {"fusion_layer": 2},
    "bottleneck": {"n_bottlenecks": 4, "fusion_layer": 2},
}
SAMPLES = 16_000  # the soundtrack of 8 frames at 8 fps: 1 s at 16 kHz
# AST as audio_digits: overlapping 16 x 16 patches of 98 frames x 64 mel bins
AUDIO = audio_tower("ast", SAMPLES)
TINY_TOWER = {"width": 32, "depth": 1, "num_heads": 2}


def _check(a: dict) -> None:
    choices = {
        "task": TASKS,
        "fusion": tuple(FUSION_FIELDS),
        "modality": ("both", "video", "audio"),
        "tower": VIDEO_TOWERS,
        "combine": ("product", "concat", "sum", "gate"),  # mmjax.fusion.LateFusion's
    }
    for key, allowed in choices.items():
        if a[key] not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {a[key]!r}")
    if a["task"] == "localization" and a["tower"] != "frame_vit":
        raise ValueError(f"task=localization scores frame_vit's patches of each frame; tower={a['tower']} has none")
    if a["combine"] != ARGS["combine"] and a["fusion"] != "late":
        raise ValueError(f"combine={a['combine']} is fusion=late's option, got fusion={a['fusion']}")


def get_config(arg=None):
    a = parse_arg(arg, **ARGS)
    _check(a)
    kind = {"both": "av", "video": "tower", "audio": "audio"}[a["modality"]]
    video = video_tower(a["tower"], tiny=a["tiny"])
    c = {
        "task": "classification",
        "data": {
            "source": "sounding_shapes",
            "audio_samples": SAMPLES,
            "label_field": "fused_label",
            "random_crop": False,  # a crop would cut a shape, or its motion, out of the frame
            "tokenizer": {"max_length": 8},  # the captions ride along; no model here reads text
        },
        # model.image and model.audio in every variant: the batches are the same, only the model reading them differs
        "model": {"kind": kind, "image": video, "audio": dict(AUDIO), "num_classes": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.05},
        "batch_size": 64,
        "total_steps": 2000,
        "log_every": 50,
        "eval_every": 500,
        "checkpoint_every": 500,
        "evals": {"classification": {"split": "test"}},
    }
    if a["task"] != "classification":
        if a["modality"] != "both" or a["fusion"] != ARGS["fusion"]:
            raise ValueError(f"task={a['task']} embeds both modalities apart: it takes no modality= or fusion=")
        c.update(task=a["task"], evals={a["task"]: {"split": "test"}})
        c["data"].pop("label_field")
        c["model"] = {"image": video, "audio": dict(AUDIO), "embed_dim": 128}
        if a["task"] == "localization":  # a finer heatmap: 8 x 8 patches of 4 px, as small as the small shapes
            c["model"]["image"].update(patch_size=4, temporal_depth=0)
            c["evals"]["correspondence"] = {"split": "test"}  # the localizer scores clip-soundtrack pairs too
    elif kind == "av":
        layers = {"width": 128, "num_layers": 4, "num_heads": 4} if a["fusion"] != "late" else {}
        c["model"]["fusion"] = {"name": a["fusion"], **layers, **FUSION_FIELDS[a["fusion"]]}
        if a["fusion"] == "late":
            c["model"]["fusion"]["combine"] = a["combine"]
    if a["tiny"]:
        deep_update(
            c,
            {
                "data": {
                    "sounding_shapes": {"num_train": 64, "num_validation": 16, "num_test": 16, "num_compositional": 16}
                },
                "model": {"audio": TINY_TOWER},
            },
        )
        if a["task"] != "classification":
            c["model"]["embed_dim"] = 16
        if "fusion" in c["model"] and a["fusion"] != "late":
            c["model"]["fusion"].update({"width": 32, "num_layers": 2, "num_heads": 2})
            if "fusion_layer" in c["model"]["fusion"]:
                c["model"]["fusion"]["fusion_layer"] = 1
        tiny_schedule(c)
    return ml_collections.ConfigDict(c)


def get_sweep(arg=None):
    """The fusion ablation: the same towers and budget, four ways to fuse them."""
    a = parse_arg(arg, **ARGS)
    if a["modality"] != "both" or a["task"] != "classification":
        return []
    return [{"product": {"model.fusion": [_fusion(name, arg) for name in FUSION_FIELDS]}}]


def _fusion(name, arg):
    dropped = ("fusion=",) if name == "late" else ("fusion=", "combine=")  # combine= is late fusion's alone
    parts = [p for p in (arg or "").split(",") if p and not p.startswith(dropped)]
    return get_config(",".join(parts + [f"fusion={name}"])).model.fusion.to_dict()
