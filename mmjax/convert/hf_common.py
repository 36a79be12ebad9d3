"""What every Hugging Face converter shares: the converter record, activation names, override routing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from mmjax.convert.mapping import Rule


@dataclasses.dataclass(frozen=True)
class HFConverter:
    """One row of the architecture table: everything needed to move one Hugging Face class in and out.

    architecture:  the class name in config.json `architectures` (e.g. "CLIPModel").
    model_type:    config.json `model_type` (e.g. "clip"), used when `architectures` is absent.
    model_class:   the mmjax class built on load and accepted on save.
    build_model:   (hf_config, dtype, param_dtype, overrides) -> model; ValueError for configs it cannot
                   reproduce exactly.
    export_config: model -> config.json dict; ValueError naming the field Hugging Face cannot represent.
    rules:         model -> [Rule] in the unscanned layout (mapping.py stacks scanned encoders itself).
    example_inputs: model -> keyword inputs for `model.init`, used only under jax.eval_shape.
    ignored_keys:  checkpoint entries that are buffers, not parameters (e.g. position_ids), skipped by name.
    normalize_key: old or prefixed checkpoint names -> current ones (LayerNorm.gamma -> .weight), or None.
    exports:       model -> whether save_pretrained picks this converter for it, when several Hugging Face
                   classes share one model_class (CLIP exports as CLIPModel or, with a logit bias, SiglipModel);
                   None: every model of model_class.
    """

    architecture: str
    model_type: str
    model_class: type[nn.Module]
    build_model: Callable[..., nn.Module]
    export_config: Callable[[nn.Module], dict]
    rules: Callable[[nn.Module], list[Rule]]
    example_inputs: Callable[[nn.Module], dict]
    ignored_keys: frozenset[str] = frozenset()
    normalize_key: Callable[[str], str] | None = None
    exports: Callable[[nn.Module], bool] | None = None


# Hugging Face `hidden_act` -> layers.transformer.ACTIVATIONS. gelu_new, gelu_pytorch_tanh and gelu_fast are
# all the tanh approximation, written three ways.
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
# mmjax -> the one Hugging Face name every transformers version understands.
MM_ACTIVATIONS = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_tanh": "gelu_new",
    "relu": "relu",
    "silu": "silu",
}


def activation_from_hf(name: Any, where: str) -> str:
    if name not in HF_ACTIVATIONS:
        raise ValueError(f"{where}.hidden_act={name!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}")
    return HF_ACTIVATIONS[name]


def activation_to_hf(name: str, where: str) -> str:
    if name not in MM_ACTIVATIONS:
        raise ValueError(f"{where}.activation={name!r} has no Hugging Face equivalent ({sorted(MM_ACTIVATIONS)})")
    return MM_ACTIVATIONS[name]


def encoder_fields(tower: nn.Module, hidden_act: str) -> dict:
    """The transformer sizes every Hugging Face text/vision config spells the same way (CLIP, SigLIP)."""
    return {
        "hidden_size": tower.width,
        "intermediate_size": tower.mlp_dim or 4 * tower.width,
        "num_hidden_layers": tower.depth,
        "num_attention_heads": tower.num_heads,
        "hidden_act": hidden_act,
        "layer_norm_eps": tower.layer_norm_eps,
        "attention_dropout": tower.attention_dropout_rate,
    }


def image_fields(vit: nn.Module) -> dict:
    """A ViT's input geometry in Hugging Face's vision-config names."""
    return {"num_channels": vit.channels, "image_size": vit.image_size, "patch_size": vit.patch_size}


def label_maps(num_labels: int) -> dict:
    """HF's id2label / label2id for a classifier that knows only how many classes it has (generic names)."""
    id2label = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    return {"id2label": id2label, "label2id": {name: int(i) for i, name in id2label.items()}}


def example_videos(tower: nn.Module):
    """One zero clip [1, T, S, S, C] of the size a video tower was built for (converters trace it to get shapes)."""
    import jax.numpy as jnp

    return jnp.zeros((1, tower.num_frames, tower.image_size, tower.image_size, tower.channels), jnp.float32)


def require(config: Mapping, key: str, where: str):
    """config[key], or a ValueError naming the missing config field."""
    if key not in config or config[key] is None:
        raise ValueError(f"Hugging Face config {where} has no {key!r}")
    return config[key]


def refuse_unless(ok: bool, model_name: str, field: str, value: Any, why: str) -> None:
    """ValueError naming the model field whose value the Hugging Face class cannot represent."""
    if not ok:
        raise ValueError(f"cannot export to Hugging Face: {model_name}.{field}={value!r} ({why})")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}


def split_overrides(overrides: Mapping[str, Any], parts: Mapping[str, type]) -> dict[str, dict]:
    """Route user overrides to the modules that have those fields.

    parts: part name -> module class; "" is the top-level model (e.g. {"": CLIP, "image_tower": ViT, ...}).
    A key naming a part with a dict value (`text_tower={"scan": True}`) goes to that part only; any other key
    goes to every part that has a field of that name (`scan=True` reaches both CLIP towers). A key no part has
    is a ValueError listing the fields that exist, so a typo is never silently ignored.
    """
    routed: dict[str, dict] = {name: {} for name in parts}
    for key, value in overrides.items():
        if key in parts and key:
            if not isinstance(value, Mapping):
                # The converter builds the sub-module from the checkpoint's config; replacing it wholesale
                # would discard that, so only field changes are accepted.
                raise ValueError(f"override {key}= must be a dict of {parts[key].__name__} fields, got {value!r}")
            unknown = set(value) - _field_names(parts[key])
            if unknown:
                raise ValueError(f"{parts[key].__name__} has no fields {sorted(unknown)}")
            routed[key].update(value)
            continue
        targets = [name for name, cls in parts.items() if key in _field_names(cls)]
        if not targets:
            known = sorted(set().union(*(_field_names(c) for c in parts.values())))
            raise ValueError(f"unknown model override {key!r}; fields of this model: {known}")
        for name in targets:
            routed[name][key] = value
    return routed
