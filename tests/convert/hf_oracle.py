"""The reference side of the converter tests: tiny Hugging Face models with non-trivial weights, run on CPU.

Every parameter (LayerNorm scales and biases included) is redrawn from normal(0, 0.2): with the default init
LayerNorms are the identity and many mapping mistakes (a swapped ln_1/ln_2, a missing transpose of a square
matrix) would cancel out.
"""

from __future__ import annotations

import jax
import numpy as np
import torch
from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

ATOL = 1e-4


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.2, logit_scale: float | None = None):
    """Redraw every parameter in place from normal(0, std); optionally set CLIP's logit_scale."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "logit_scale" and logit_scale is not None:
                p.fill_(logit_scale)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def tiny_clip(
    *,
    text_width=20,
    text_heads=5,
    vision_width=36,
    vision_heads=3,
    text_act="quick_gelu",
    vision_act="quick_gelu",
    eos_token_id=2,
    vocab_size=64,
    max_positions=12,
    image_size=16,
    patch_size=4,
    channels=3,
    layers=2,
    projection_dim=12,
    logit_scale=3.3,  # < ln(100): mmjax clamps exp(logit_scale) at 100 as OpenAI's training did
    text_mlp=None,
    vision_mlp=None,
    seed=0,
) -> CLIPModel:
    text = dict(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=text_mlp or 2 * text_width + 3,
        num_hidden_layers=layers,
        num_attention_heads=text_heads,
        max_position_embeddings=max_positions,
        hidden_act=text_act,
        eos_token_id=eos_token_id,
        bos_token_id=vocab_size - 2,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=vision_width,
        intermediate_size=vision_mlp or 2 * vision_width + 5,
        num_hidden_layers=layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=channels,
        hidden_act=vision_act,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    return randomize_(CLIPModel(config), seed, logit_scale=logit_scale)


def tiny_bert(*, width=20, heads=5, layers=2, act="gelu", type_vocab_size=2, vocab_size=64, seed=0) -> BertModel:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * width + 1,
        hidden_act=act,
        max_position_embeddings=16,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    return randomize_(BertModel(config), seed)


def clip_reference(model: CLIPModel, pixel_values_nchw, input_ids, attention_mask) -> dict:
    """CLIPModel outputs as numpy, with each tower's *unprojected* pooler output.

    transformers 5 replaces `text_model_output.pooler_output` in CLIPOutput by the projected vector; mmjax
    keeps the tower's own (as transformers 4 did), so the towers are also run on their own for the comparison.
    """
    px, ids, mask = torch.tensor(pixel_values_nchw), torch.tensor(input_ids), torch.tensor(attention_mask)
    with torch.no_grad():
        out = model(pixel_values=px, input_ids=ids, attention_mask=mask)
        text = model.text_model(input_ids=ids, attention_mask=mask)
        vision = model.vision_model(pixel_values=px)
    return {
        "image_embeds": out.image_embeds.numpy(),
        "text_embeds": out.text_embeds.numpy(),
        "logits_per_image": out.logits_per_image.numpy(),
        "logits_per_text": out.logits_per_text.numpy(),
        "text_model_output": {
            "last_hidden_state": text.last_hidden_state.numpy(),
            "pooler_output": text.pooler_output.numpy(),
        },
        "vision_model_output": {
            "last_hidden_state": vision.last_hidden_state.numpy(),
            "pooler_output": vision.pooler_output.numpy(),
        },
    }


def tiny_siglip(
    *,
    text_width=48,
    text_heads=3,
    vision_width=48,
    vision_heads=3,
    act="gelu_pytorch_tanh",
    vocab_size=99,
    max_positions=11,
    image_size=30,
    patch_size=6,
    channels=3,
    layers=2,
    projection_size=None,
    logit_scale=4.8,  # exp = 121.5: above CLIP's clamp at 100, as released SigLIPs are (no clamp in SigLIP)
    seed=0,
) -> SiglipModel:
    """A random SiglipModel with odd sizes (MLP widths not a multiple of the width, 25 patches, ...)."""
    text = dict(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=text_width + 22,
        num_hidden_layers=layers,
        num_attention_heads=text_heads,
        max_position_embeddings=max_positions,
        hidden_act=act,
        projection_size=projection_size,
        # In the tiny vocabulary (transformers' defaults, 49406/49407, are outside it and only warn).
        pad_token_id=1,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
    )
    vision = dict(
        hidden_size=vision_width,
        intermediate_size=vision_width + 22,
        num_hidden_layers=layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=channels,
        hidden_act=act,
    )
    model = randomize_(SiglipModel(SiglipConfig(text_config=text, vision_config=vision)), seed)
    with torch.no_grad():
        model.logit_scale.fill_(logit_scale)
    return model


def siglip_reference(model, pixel_values_nchw, input_ids, attention_mask) -> dict:
    """SiglipModel outputs as numpy: embeddings, logits, and each tower's last_hidden_state / pooler_output."""
    px, ids, mask = torch.tensor(pixel_values_nchw), torch.tensor(input_ids), torch.tensor(attention_mask)
    with torch.no_grad():
        out = model(pixel_values=px, input_ids=ids, attention_mask=mask)
    towers = {"text_model_output": out.text_model_output, "vision_model_output": out.vision_model_output}
    return {
        **{k: getattr(out, k).numpy() for k in ("image_embeds", "text_embeds", "logits_per_image", "logits_per_text")},
        **{
            name: {"last_hidden_state": o.last_hidden_state.numpy(), "pooler_output": o.pooler_output.numpy()}
            for name, o in towers.items()
        },
    }


def bert_reference(model: BertModel, input_ids, attention_mask, token_type_ids) -> dict:
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(input_ids),
            attention_mask=torch.tensor(attention_mask),
            token_type_ids=torch.tensor(token_type_ids),
        )
    return {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}


def max_diffs(ours: dict, ref: dict, token_masks: dict | None = None) -> dict[str, float]:
    """Max abs difference per output path present in `ref` (nested dicts flattened as 'a/b').

    token_masks: path -> [B, T] mask; positions where it is 0 (padding) are excluded from that output.
    """
    token_masks = token_masks or {}
    diffs = {}
    for path, want in _flat(ref).items():
        got = np.asarray(_get(ours, path), np.float32)
        assert got.shape == want.shape, f"{path}: shape {got.shape} vs reference {want.shape}"
        err = np.abs(got - want)
        if path in token_masks:
            err = err * np.asarray(token_masks[path], np.float32)[..., None]
        diffs[path] = float(err.max())
    return diffs


def assert_parity(ours: dict, ref: dict, token_masks: dict | None = None, atol: float = ATOL) -> dict:
    diffs = max_diffs(ours, ref, token_masks)
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    assert not bad, f"outputs differ from Hugging Face by more than {atol}: {bad} (all: {diffs})"
    return diffs


def perturb_params(params, seed: int, std: float = 0.2):
    """Replace every parameter of an mmjax tree by normal(0, std) draws (logit_scale kept), same shapes."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(seed)
    new = []
    for path, leaf in leaves:
        if "logit_scale" in jax.tree_util.keystr(path):
            new.append(np.asarray(3.1, np.float32))
        else:
            new.append(rng.normal(0.0, std, np.shape(leaf)).astype(np.float32))
    return jax.tree.unflatten(treedef, new)


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _get(tree, path):
    for part in path.split("/"):
        tree = tree[part]
    return tree
