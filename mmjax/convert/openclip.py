"""open_clip checkpoints -> mmjax `models.CLIP(ViT, TextTransformer)` (load only; save_pretrained then writes a
Hugging Face CLIPModel, which is what `mmjax convert` does with an open_clip directory).

A directory holds `open_clip_config.json` (the Hugging Face hub layout: {"model_cfg": {...}, "preprocess_cfg":
{...}}; a bare model config such as open_clip's model_configs/ViT-B-32.json is accepted too) and the state dict as
safetensors: `open_clip_model.safetensors`, or the directory's one *.safetensors file.

Key layout (open_clip's CLIP with its own VisionTransformer and TextTransformer):
  visual.{conv1.weight (no bias), class_embedding [D], positional_embedding [1 + N, D], ln_pre, ln_post,
          proj [D, embed] (no bias)}, visual.transformer.resblocks.{i}.*,
  token_embedding.weight, positional_embedding [T, D], transformer.resblocks.{i}.*, ln_final,
  text_projection [D, embed], logit_scale [] (and logit_bias [] with init_logit_bias).
Each resblock: ln_1, attn.in_proj_weight [3D, D] / attn.in_proj_bias (q; k; v fused, torch.nn.MultiheadAttention),
attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj (pre-LN). CustomTextCLIP's `text.` prefix and DDP's `module.` prefix
are accepted.

Semantics: the vision tower pools the class token and applies ln_post to it (ViT final_norm='pooled': the pooled
vector is the same whether open_clip normalizes before or after pooling); the text tower is causal and pools the
largest token id (pool_type 'argmax') or the last position ('last'). open_clip passes no padding mask: under the
causal mask padding after the end token cannot change it, so any attention_mask gives the same embeddings.
Activations: nn.GELU (erf), or QuickGELU with `quick_gelu: true`. Anything else open_clip can build (timm or
Hugging Face towers, ModifiedResNet, layer scale, attentional pooling, ...) is refused, naming the config key.
"""

from __future__ import annotations

import glob
import json
import math
import os

from mmjax.convert.hf_clip import example_inputs
from mmjax.convert.hf_common import HFConverter, split_overrides
from mmjax.convert.mapping import (
    CONV,
    IDENTITY,
    Rule,
    fused_attention_rules,
    layer_norm_rules,
    linear_rules,
)
from mmjax.convert.safetensors_io import CheckpointFormatError, SafetensorsCheckpoint
from mmjax.encoders.text import TextTransformer
from mmjax.encoders.vit import ViT
from mmjax.models.clip import CLIP

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
_PICKLE_NAMES = ("open_clip_pytorch_model.bin", "open_clip_model.bin")

# Config keys that do not change what a loaded model computes (training-only, tokenizer, towers not built).
_INERT = {
    "model": {"custom_text"},
    "vision": {
        "patch_dropout",
        "output_tokens",
        "attn_pooler_queries",
        "attn_pooler_heads",
        "final_ln_after_pool",
        "timm_model_pretrained",
        "timm_pool",
        "timm_proj",
        "timm_proj_bias",
        "timm_drop",
        "timm_drop_path",
    },
    "text": {
        "pad_id",
        "output_tokens",
        "final_ln_after_pool",
        "hf_tokenizer_name",
        "tokenizer_kwargs",
        "hf_model_pretrained",
        "hf_proj_type",
        "hf_pooler_type",
    },
}
# Config keys whose value mmjax needs to be one it reproduces: key -> (accepted values, what else would mean).
_REQUIRED = {
    "model": {"nonscalar_logit_scale": ((False,), "a logit_scale of shape [1]")},
    "vision": {
        "timm_model_name": ((None,), "a timm vision tower"),
        "attentional_pool": ((False,), "attentional pooling (CoCa)"),
        "ls_init_value": ((None,), "layer scale"),
        "pos_embed_type": (("learnable",), "a fixed position table"),
        "pool_type": (("tok",), "pooling other than the class token"),
        "act_kwargs": ((None, {}), "activation arguments"),
    },
    "text": {
        "hf_model_name": ((None,), "a Hugging Face text tower"),
        "ls_init_value": ((None,), "layer scale"),
        "embed_cls": ((False,), "an appended class token (CoCa)"),
        "no_causal_mask": ((False,), "bidirectional text attention"),
        "pool_type": (("argmax", "last"), "another text pooling"),
        "proj_bias": ((False,), "a text projection with a bias"),
        "proj_type": (("linear",), "another text projection"),
        "act_kwargs": ((None, {}), "activation arguments"),
    },
}
_SIZES = {
    "model": {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale", "init_logit_bias"},
    "vision": {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "no_ln_pre", "norm_kwargs"},
    "text": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "norm_kwargs"},
}


def is_open_clip_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_NAME))


def read_model_cfg(path: str) -> dict:
    """The `model_cfg` of open_clip_config.json (or the file itself when it is a bare model config)."""
    with open(os.path.join(path, CONFIG_NAME)) as f:
        config = json.load(f)
    model_cfg = config.get("model_cfg", config)
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise ValueError(f"{os.path.join(path, CONFIG_NAME)} has no model_cfg with vision_cfg and text_cfg")
    return model_cfg


def open_weights(path: str) -> SafetensorsCheckpoint:
    """open_clip_model.safetensors, else the directory's only *.safetensors file."""
    preferred = os.path.join(path, WEIGHTS_NAME)
    files = [preferred] if os.path.isfile(preferred) else sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if len(files) == 1:
        return SafetensorsCheckpoint.from_file(files[0])
    present = sorted(os.listdir(path))
    if files:
        names = [os.path.basename(f) for f in files]
        raise CheckpointFormatError(f"{path!r} holds several safetensors files {names} and no {WEIGHTS_NAME}")
    pickles = [name for name in present if name in _PICKLE_NAMES or name.endswith((".pt", ".pth", ".bin"))]
    if pickles:
        raise CheckpointFormatError(
            f"{path!r} holds PyTorch pickle weights ({', '.join(pickles)}), which mmjax never loads because "
            "unpickling can run arbitrary code. Convert them once, in an environment you trust: "
            "`model, _, _ = open_clip.create_model_and_transforms(name, pretrained=file); "
            f"safetensors.torch.save_file(model.state_dict(), '{WEIGHTS_NAME}')`."
        )
    raise CheckpointFormatError(f"{path!r} has no {WEIGHTS_NAME} nor any *.safetensors file (found: {present})")


# --- rules --------------------------------------------------------------------------------------------------


def resblock_rules(hf: str, mm: str) -> list[Rule]:
    """One open_clip ResidualAttentionBlock `{hf}` <-> layers.Block at `{mm}` (pre-LN)."""
    return [
        *layer_norm_rules(f"{hf}.ln_1", f"{mm}/ln_1"),
        *fused_attention_rules(f"{hf}.attn", f"{mm}/attn"),
        *layer_norm_rules(f"{hf}.ln_2", f"{mm}/ln_2"),
        *linear_rules(f"{hf}.mlp.c_fc", f"{mm}/mlp/fc1"),
        *linear_rules(f"{hf}.mlp.c_proj", f"{mm}/mlp/fc2"),
    ]


def _resblocks(hf: str, mm: str, depth: int) -> list[Rule]:
    return [r for i in range(depth) for r in resblock_rules(f"{hf}.resblocks.{i}", f"{mm}/layer_{i}")]


def rules(model: CLIP) -> list[Rule]:
    vit, text = model.image_tower, model.text_tower
    out = [
        Rule("visual.conv1.weight", "image_tower/embedding/conv/kernel", CONV),
        Rule("visual.class_embedding", "image_tower/cls_token"),
        Rule("visual.positional_embedding", "image_tower/pos_embedding"),
        *(layer_norm_rules("visual.ln_pre", "image_tower/ln_pre") if vit.pre_norm else []),
        *_resblocks("visual.transformer", "image_tower/encoder", vit.depth),
        *layer_norm_rules("visual.ln_post", "image_tower/ln_post"),
        # open_clip multiplies `pooled @ proj`: proj [width, embed] is already a Dense kernel [in, out].
        Rule("visual.proj", "image_projection/kernel", IDENTITY),
        Rule("token_embedding.weight", "text_tower/token_embed/embedding"),
        Rule("positional_embedding", "text_tower/pos_embed/embedding"),
        *_resblocks("transformer", "text_tower/encoder", text.depth),
        *layer_norm_rules("ln_final", "text_tower/ln_final"),
        Rule("text_projection", "text_projection/kernel", IDENTITY),
    ]
    out.append(Rule("logit_scale", "logit_scale"))
    if model.logit_bias_init is not None:
        out.append(Rule("logit_bias", "logit_bias"))
    return out


# --- config -------------------------------------------------------------------------------------------------


def _check_keys(cfg: dict, part: str, where: str) -> None:
    known = _SIZES[part] | _INERT[part] | set(_REQUIRED[part])
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"open_clip {where} has keys mmjax does not know: {unknown} (known: {sorted(known)})")
    for key, (accepted, meaning) in _REQUIRED[part].items():
        if key in cfg and cfg[key] not in accepted:
            raise ValueError(
                f"open_clip {where}.{key}={cfg[key]!r} is not supported ({meaning}); mmjax loads {accepted}"
            )


def _eps(cfg: dict, where: str) -> float:
    kwargs = dict(cfg.get("norm_kwargs") or {})
    eps = kwargs.pop("eps", 1e-5)  # torch.nn.LayerNorm's default, which open_clip keeps
    if kwargs:
        raise ValueError(f"open_clip {where}.norm_kwargs {sorted(kwargs)} are not supported (only eps)")
    return eps


def _square(value, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"open_clip vision_cfg.{name}={value!r}: only square sizes are supported")
        value = value[0]
    return int(value)


def build_model(model_cfg: dict, dtype, param_dtype, overrides: dict) -> CLIP:
    """open_clip model_cfg -> CLIP(ViT, TextTransformer) computing what open_clip's CLIP computes."""
    _check_keys(model_cfg, "model", "model_cfg")
    vc, tc = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    _check_keys(vc, "vision", "vision_cfg")
    _check_keys(tc, "text", "text_cfg")
    if not isinstance(vc.get("layers", 12), int):
        raise ValueError(f"open_clip vision_cfg.layers={vc['layers']!r} is a ModifiedResNet, which is not supported")
    activation = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    routed = split_overrides(overrides, {"": CLIP, "image_tower": ViT, "text_tower": TextTransformer})
    common = dict(dtype=dtype, param_dtype=param_dtype)
    width = vc.get("width", 768)
    vit = dict(
        width=width,
        depth=vc.get("layers", 12),
        mlp_dim=int(width * vc.get("mlp_ratio", 4.0)),  # as open_clip computes it
        num_heads=width // vc.get("head_width", 64),
        patch_size=_square(vc.get("patch_size", 16), "patch_size"),
        image_size=_square(vc.get("image_size", 224), "image_size"),
        channels=3,
        pooling="tok",
        posemb="learn",
        pre_norm=not vc.get("no_ln_pre", False),
        final_norm="pooled",
        patch_bias=False,
        activation=activation,
        layer_norm_eps=_eps(vc, "vision_cfg"),
        **common,
    )
    text_width = tc.get("width", 512)
    text = dict(
        vocab_size=tc.get("vocab_size", 49408),
        width=text_width,
        depth=tc.get("layers", 12),
        num_heads=tc.get("heads", 8),
        mlp_dim=int(text_width * tc.get("mlp_ratio", 4.0)),
        max_length=tc.get("context_length", 77),
        activation=activation,
        layer_norm_eps=_eps(tc, "text_cfg"),
        causal=True,
        pool={"argmax": "argmax", "last": "last_position"}[tc.get("pool_type", "argmax")],
        eos_token_id=None,
        **common,
    )
    bias = model_cfg.get("init_logit_bias")
    return CLIP(
        image_tower=ViT(**{**vit, **routed["image_tower"]}),
        text_tower=TextTransformer(**{**text, **routed["text_tower"]}),
        **{
            "embed_dim": model_cfg.get("embed_dim", 512),
            "projection_bias": False,
            "logit_scale_init": model_cfg.get("init_logit_scale", math.log(1 / 0.07)),
            "logit_bias_init": None if bias is None else float(bias),
            **common,
            **routed[""],
        },
    )


def _refuse_export(model: CLIP) -> dict:
    raise ValueError("open_clip checkpoints are read only; save_pretrained writes a Hugging Face CLIPModel")


def normalize_key(key: str) -> str:
    """DDP's `module.` prefix and CustomTextCLIP's `text.` prefix -> open_clip CLIP's names."""
    return key.removeprefix("module.").removeprefix("text.")


# The converter record of the Hugging Face table, reused: load_pretrained picks it by CONFIG_NAME, never by
# config.json, and save_pretrained never picks it (it is not in ARCHITECTURES).
CONVERTER = HFConverter(
    architecture="open_clip",
    model_type="open_clip",
    model_class=CLIP,
    build_model=build_model,
    export_config=_refuse_export,
    rules=rules,
    example_inputs=example_inputs,
    # The causal mask: a non-persistent buffer in current open_clip, saved by old versions.
    ignored_keys=frozenset({"attn_mask"}),
    normalize_key=normalize_key,
)
