"""Weights in and out: Hugging Face `save_pretrained` directories (config.json + safetensors), and open_clip
checkpoints in (open_clip_config.json + safetensors; openclip.py).

    model, variables = load_pretrained("path/to/clip-dir", scan=True)
    out = model.apply(variables, pixel_values=images_nhwc, input_ids=ids, attention_mask=mask)
    save_pretrained(model, variables, "path/to/out")   # transformers' from_pretrained loads it back

`ARCHITECTURES` is the one table of supported Hugging Face classes. Supporting another one is one entry here
and one module exposing an `HFConverter` (see hf_bert.py for the shape of it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.convert import (
    hf_ast,
    hf_bert,
    hf_clip,
    hf_siglip,
    hf_timesformer,
    hf_videomae,
    hf_visualbert,
    hf_vivit,
    hf_whisper,
    openclip,
)
from mmjax.convert.hf_common import HFConverter
from mmjax.convert.mapping import (
    CheckpointMismatchError,
    check_rules,
    compare_shapes,
    expected_params,
    export_params,
    flatten,
    hf_shapes,
    import_params,
    unstack_layers,
)
from mmjax.convert.safetensors_io import CheckpointFormatError, open_checkpoint, read_config, write_checkpoint

ARCHITECTURES: dict[str, HFConverter] = {
    c.architecture: c
    for c in (
        hf_clip.CONVERTER,
        *hf_siglip.CONVERTERS,
        hf_bert.CONVERTER,
        *hf_visualbert.CONVERTERS,
        *hf_ast.CONVERTERS,
        *hf_whisper.CONVERTERS,
        *hf_videomae.CONVERTERS,
        *hf_vivit.CONVERTERS,
        *hf_timesformer.CONVERTERS,
    )
}


def _converter_for_config(config: Mapping, path: str) -> HFConverter:
    """Pick the converter by `architectures`, else by `model_type` (task checkpoints such as BertForMaskedLM
    share the base model's type; their head weights then surface as unexpected keys, not silently dropped)."""
    for arch in config.get("architectures") or ():
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    for converter in ARCHITECTURES.values():
        if config.get("model_type") == converter.model_type:
            return converter
    raise ValueError(
        f"unsupported architecture in {path!r}: architectures={config.get('architectures')}, "
        f"model_type={config.get('model_type')!r}; supported architectures: {sorted(ARCHITECTURES)} "
        f"(model_type {sorted({c.model_type for c in ARCHITECTURES.values()})})"
    )


def _converter_for_model(model: nn.Module) -> HFConverter:
    for converter in ARCHITECTURES.values():
        if type(model) is converter.model_class and (converter.exports is None or converter.exports(model)):
            return converter
    supported = sorted(c.model_class.__name__ for c in ARCHITECTURES.values())
    raise ValueError(f"cannot export {type(model).__name__} to Hugging Face; supported models: {supported}")


def _checkpoint_shapes(checkpoint, converter: HFConverter) -> tuple[dict[str, tuple], dict[str, str]]:
    """Checkpoint key -> shape under the converter's names, minus known buffers; and name -> original key."""
    shapes, original = {}, {}
    for key, shape in checkpoint.shapes.items():
        name = converter.normalize_key(key) if converter.normalize_key else key
        if name in converter.ignored_keys:
            continue
        if name in original:  # e.g. both `bert.pooler...` and `pooler...`: refuse to pick one silently
            raise ValueError(f"checkpoint keys {original[name]!r} and {key!r} both name the parameter {name!r}")
        shapes[name], original[name] = shape, key
    return shapes, original


def load_pretrained(
    path: str | os.PathLike,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    **model_overrides,
) -> tuple[nn.Module, dict]:
    """Load a Hugging Face `save_pretrained` directory (any class in ARCHITECTURES: CLIPModel, SiglipModel and its
    towers, BertModel, VisualBERT, ASTModel / ASTForAudioClassification, the encoder of
    WhisperModel / WhisperForConditionalGeneration, VideoMAE, ViViT and TimeSformer with their video
    classifiers) or an open_clip checkpoint into an mmjax model.

    path:            directory with config.json and model.safetensors (or an index + shards); or with
                     open_clip_config.json and open_clip_model.safetensors (or one *.safetensors file).
    dtype:           compute dtype of every module; param_dtype: dtype the weights are cast to.
    model_overrides: module fields to change, e.g. scan=True, remat=True, interpolate_pos_embed=True,
                     pool='mean'. A plain key goes to every sub-module with that field; `text_tower={...}` /
                     `image_tower={...}` / `bert={...}` target one. Unknown names are a ValueError.

    Returns (model, {"params": tree}) with the tree in the model's own layout (stacked `layers` when
    scan=True), ready for `model.apply(variables, **inputs)`. Raises CheckpointFormatError for unreadable
    directories and pickle-only checkpoints, ValueError for unsupported architectures, and
    CheckpointMismatchError listing every missing, unexpected and mis-shaped key (with shapes) before any
    weight is loaded.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and openclip.is_open_clip_dir(path):
        converter = openclip.CONVERTER
        model = converter.build_model(openclip.read_model_cfg(path), dtype, param_dtype, model_overrides)
        checkpoint = openclip.open_weights(path)
    else:
        config = read_config(path)
        converter = _converter_for_config(config, path)
        model = converter.build_model(config, dtype, param_dtype, model_overrides)
        checkpoint = open_checkpoint(path)

    expected = expected_params(model, converter.example_inputs(model))
    rules = converter.rules(model)
    expected_flat = flatten(unstack_layers(expected))
    check_rules(rules, expected_flat, "checkpoint" if converter is openclip.CONVERTER else "Hugging Face")
    got, original = _checkpoint_shapes(checkpoint, converter)
    try:
        compare_shapes(hf_shapes(rules, expected_flat), got, f"{converter.architecture} at {path}")
    except CheckpointMismatchError as e:
        # Report unexpected keys as the checkpoint spells them (before prefix/legacy renaming).
        unexpected = {original[k]: s for k, s in e.unexpected.items()}
        raise CheckpointMismatchError(e.missing, unexpected, e.mismatched, e.context) from None

    tensors = checkpoint.read({original[r.hf] for r in rules})
    tensors = {name: tensors[key] for name, key in original.items() if key in tensors}
    params = import_params(rules, tensors, expected, param_dtype)
    return model, {"params": jax.tree.map(jnp.asarray, params)}


def save_pretrained(
    model: nn.Module,
    variables: Mapping,
    path: str | os.PathLike,
    *,
    max_shard_bytes: int | None = None,
) -> None:
    """Write `model` and its `variables` as a Hugging Face directory (config.json + model.safetensors).

    transformers' `CLIPModel.from_pretrained(path)` (`SiglipModel`, `BertModel`, ...) loads it back and computes
    the same outputs. A CLIP exports as CLIPModel, or as SiglipModel when it has a logit bias; a ViT as
    SiglipVisionModel and a TextTransformer as SiglipTextModel (SigLIP's towers); a WhisperEncoderModel as a
    WhisperModel without decoder weights (transformers initialises its one-layer decoder; hf_whisper.py). Works
    for scanned models (layers are unstacked). Raises ValueError naming the field when the model has something the
    Hugging Face class cannot represent (a ResNet image tower, a CLIP with both projections and a logit bias,
    ...), and CheckpointMismatchError when `variables` do not match the model.
    """
    converter = _converter_for_model(model)
    config = converter.export_config(model)
    params = nn.meta.unbox(variables["params"])
    expected = expected_params(model, converter.example_inputs(model))
    compare_shapes(
        {k: tuple(v.shape) for k, v in flatten(expected).items()},
        {k: tuple(v.shape) for k, v in flatten(params).items()},
        f"variables given to save_pretrained for {type(model).__name__}",
    )
    rules = converter.rules(model)
    check_rules(rules, flatten(unstack_layers(expected)), "Hugging Face")
    write_checkpoint(path, config, export_params(rules, params), max_shard_bytes=max_shard_bytes)


__all__ = [
    "ARCHITECTURES",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "HFConverter",
    "load_pretrained",
    "save_pretrained",
]
