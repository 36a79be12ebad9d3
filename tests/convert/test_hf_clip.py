"""CLIPModel parity with Hugging Face transformers, scan loading, and export back to transformers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, clip_reference, perturb_params, tiny_clip  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import TextTransformer, ViT  # noqa: E402
from mmjax.models import CLIP  # noqa: E402

# (name, tiny_clip kwargs). Odd widths / head counts / MLP sizes, each activation, both pooling modes of
# transformers' CLIPTextModel (eos_token_id == 2 -> argmax of ids; else first eos), 1 and 3 channels.
CONFIGS = {
    "argmax_quick_gelu": dict(text_width=20, text_heads=5, vision_width=36, vision_heads=3, eos_token_id=2),
    "eos_gelu_1ch": dict(
        text_width=36,
        text_heads=3,
        vision_width=20,
        vision_heads=5,
        text_act="gelu",
        vision_act="gelu",
        eos_token_id=7,
        image_size=12,
        patch_size=3,
        channels=1,
    ),
    "eos_gelu_tanh": dict(
        text_width=28,
        text_heads=7,
        vision_width=30,
        vision_heads=6,
        text_act="gelu_pytorch_tanh",
        vision_act="gelu_new",
        eos_token_id=5,
        layers=1,
        seed=3,
    ),
}


def text_batch(eos_token_id: int, vocab_size: int = 64, length: int = 12, seed: int = 0):
    """Right-padded ids [3, length] with end-of-text at a different position in every row, and their mask.

    argmax mode (eos 2): the end-of-text is the largest id and ids are otherwise smaller, as in OpenAI's BPE.
    eos mode: ordinary tokens include ids larger than eos (so argmax pooling would pick the wrong token), and
    one row pads with the eos id itself (pad == eos, as open_clip tokenizers do): only the first eos may
    count.
    """
    rng = np.random.default_rng(seed)
    eos = vocab_size - 1 if eos_token_id == 2 else eos_token_id
    low = 3 if eos_token_id == 2 else eos_token_id + 1
    high = vocab_size - 1
    lengths, pads = (4, length, 9), (0, 0, eos)
    ids = np.zeros((3, length), np.int64)
    mask = np.zeros((3, length), np.int64)
    for row, (n, pad) in enumerate(zip(lengths, pads)):
        ids[row, : n - 1] = rng.integers(low, high, n - 1)
        ids[row, n - 1] = eos
        ids[row, n:] = pad
        mask[row, :n] = 1
    return ids, mask


def run_clip(model, variables, pixel_values_nchw, input_ids, attention_mask):
    fn = jax.jit(lambda v, px, ids, m: model.apply(v, pixel_values=px, input_ids=ids, attention_mask=m))
    out = fn(variables, jnp.asarray(pixel_values_nchw.transpose(0, 2, 3, 1)), input_ids, attention_mask)
    return jax.device_get(out)


def check_against_hf(hf, model, variables, eos_token_id, seed=0):
    cfg = hf.config.vision_config
    px = np.random.default_rng(seed).normal(size=(2, cfg.num_channels, cfg.image_size, cfg.image_size))
    px = px.astype(np.float32)
    ids, mask = text_batch(
        eos_token_id, hf.config.text_config.vocab_size, hf.config.text_config.max_position_embeddings
    )
    ours = run_clip(model, variables, px, ids, mask)
    ref = clip_reference(hf, px, ids, mask)
    return assert_parity(ours, ref, {"text_model_output/last_hidden_state": mask})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_clip_matches_transformers(name, tmp_path):
    kwargs = CONFIGS[name]
    hf = tiny_clip(**kwargs)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    expected_pool = "argmax" if kwargs["eos_token_id"] == 2 else "eos"
    assert model.text_tower.pool == expected_pool
    diffs = check_against_hf(hf, model, variables, kwargs["eos_token_id"])
    print(f"CLIP {name} max abs diffs: {diffs}")


def test_clip_scan_load_matches_transformers(tmp_path):
    hf = tiny_clip(**CONFIGS["eos_gelu_1ch"])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path, scan=True, remat=True)
    assert model.image_tower.scan and model.text_tower.scan
    stacked = variables["params"]["image_tower"]["encoder"]["layers"]["attn"]["query"]["kernel"]
    assert stacked.shape == (2, 20, 5, 4)  # [layers, embed, heads, head_dim]
    assert "layer_0" not in variables["params"]["text_tower"]["encoder"]
    diffs = check_against_hf(hf, model, variables, eos_token_id=7)
    print(f"CLIP scan=True max abs diffs: {diffs}")


def mmjax_clip(*, scan_image: bool) -> CLIP:
    vit = ViT(
        width=24,
        depth=2,
        mlp_dim=40,
        num_heads=3,
        patch_size=4,
        image_size=12,
        channels=3,
        pre_norm=True,
        final_norm="pooled",
        patch_bias=False,
        activation="quick_gelu",
        layer_norm_eps=1e-5,
        scan=scan_image,
    )
    text = TextTransformer(
        vocab_size=64, width=20, depth=2, num_heads=4, mlp_dim=30, max_length=12, pool="eos", eos_token_id=9
    )
    return CLIP(vit, text, embed_dim=16)


def test_mmjax_clip_exports_to_transformers(tmp_path):
    model = mmjax_clip(scan_image=True)
    px = np.random.default_rng(1).normal(size=(2, 3, 12, 12)).astype(np.float32)
    ids, mask = text_batch(9)
    # Shapes from eval_shape, values all redrawn: no need to run (slow, eager) init.
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(px.transpose(0, 2, 3, 1)), ids, mask)
    variables = {"params": perturb_params(nn.meta.unbox(shapes["params"]), seed=1)}
    save_pretrained(model, variables, tmp_path)

    hf, info = transformers.CLIPModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    diffs = assert_parity(
        run_clip(model, variables, px, ids, mask),
        clip_reference(hf.eval(), px, ids, mask),
        {"text_model_output/last_hidden_state": mask},
    )
    print(f"mmjax -> transformers CLIP max abs diffs: {diffs}")


@pytest.mark.parametrize("scan", [False, True])
def test_transformers_clip_round_trips_state_dict(scan, tmp_path):
    hf = tiny_clip(**CONFIGS["eos_gelu_tanh"])
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=scan)
    save_pretrained(model, variables, tmp_path / "ours")
    back = transformers.CLIPModel.from_pretrained(tmp_path / "ours")
    want, got = hf.state_dict(), back.state_dict()
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert back.config.text_config.eos_token_id == 5
    assert back.config.vision_config.hidden_act == "gelu_new"


def test_overrides_reach_the_right_tower(tmp_path):
    tiny_clip(**CONFIGS["argmax_quick_gelu"]).save_pretrained(tmp_path, safe_serialization=True)
    model, _ = load_pretrained(tmp_path, interpolate_pos_embed=True, text_tower={"scan": True})
    assert model.image_tower.interpolate_pos_embed and not model.image_tower.scan
    assert model.text_tower.scan
    with pytest.raises(ValueError, match="unknown model override 'scna'"):
        load_pretrained(tmp_path, scna=True)


class NotAViT(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        return x


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.clone(image_tower=NotAViT()), "image_tower"),
        (lambda m: m.clone(image_tower=m.image_tower.clone(pooling="map")), "pooling"),
        (lambda m: m.clone(image_tower=m.image_tower.clone(final_norm="all")), "final_norm"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(pool="mean")), "pool"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(eos_token_id=2)), "eos_token_id"),
        (lambda m: m.clone(logit_bias_init=-10.0), "logit_bias_init"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(activation="silu_x")), "activation"),
    ],
)
def test_export_refuses_what_transformers_cannot_represent(change, field, tmp_path):
    model = change(mmjax_clip(scan_image=False))
    with pytest.raises(ValueError, match=field):
        save_pretrained(model, {"params": {}}, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
