"""SiglipModel / SiglipVisionModel / SiglipTextModel parity with transformers, and export back to transformers."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, perturb_params, randomize_, siglip_reference, tiny_siglip  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from mmjax.cli import main as cli_main  # noqa: E402
from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import TextTransformer, ViT  # noqa: E402
from mmjax.models import CLIP  # noqa: E402

# (name, tiny_siglip kwargs). "odd": width 48, 3 heads, 2 layers, 30 px images in 6 px patches (25 patches, no
# class token), vocabulary 99, 11 positions, SigLIP's tanh gelu. "uneven": towers of different widths, a text
# head projecting 36 -> 20 (the vision width), quick_gelu, one channel, one layer.
CONFIGS = {
    "odd": dict(),
    "uneven": dict(
        text_width=36,
        text_heads=4,
        vision_width=20,
        vision_heads=5,
        projection_size=20,
        act="quick_gelu",
        image_size=12,
        patch_size=4,
        channels=1,
        layers=1,
        seed=3,
    ),
}


def text_batch(vocab_size: int, length: int, seed: int = 0):
    """ids [3, length] and a mask with right padding (pad id 1) in two rows, none in the third.

    SigLIP pools the last POSITION, padded or not: in the padded rows that is a pad token attending to the real
    ones, which is exactly what must match.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab_size, (3, length))
    mask = np.ones((3, length), np.int64)
    for row, n in ((0, 4), (2, length - 3)):
        ids[row, n:], mask[row, n:] = 1, 0
    return ids, mask


def images(config, seed: int = 0):
    shape = (2, config.num_channels, config.image_size, config.image_size)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def run_siglip(model, variables, pixel_values_nchw, input_ids, attention_mask):
    fn = jax.jit(lambda v, px, ids, m: model.apply(v, pixel_values=px, input_ids=ids, attention_mask=m))
    return jax.device_get(
        fn(variables, jnp.asarray(pixel_values_nchw.transpose(0, 2, 3, 1)), input_ids, attention_mask)
    )


def check_against_hf(hf, model, variables):
    px = images(hf.config.vision_config)
    ids, mask = text_batch(hf.config.text_config.vocab_size, hf.config.text_config.max_position_embeddings)
    # Every position is compared, padding included: both sides compute padded rows the same way.
    return assert_parity(run_siglip(model, variables, px, ids, mask), siglip_reference(hf, px, ids, mask))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_siglip_matches_transformers(name, tmp_path):
    hf = tiny_siglip(**CONFIGS[name])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    assert model.embed_dim is None and model.image_tower.pooling == "map"
    assert model.text_tower.pool == "last_position" and not model.text_tower.causal
    assert float(jnp.exp(variables["params"]["logit_scale"])) > 100  # no clamp: SigLIP has none
    diffs = check_against_hf(hf, model, variables)
    print(f"SigLIP {name} max abs diffs: {diffs}")


def test_siglip_scan_load_matches_transformers(tmp_path):
    hf = tiny_siglip(**CONFIGS["odd"])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path, scan=True)
    assert variables["params"]["image_tower"]["encoder"]["layers"]["attn"]["query"]["kernel"].shape == (2, 48, 3, 16)
    diffs = check_against_hf(hf, model, variables)
    print(f"SigLIP scan=True max abs diffs: {diffs}")


def tower_dirs(tmp_path, use_head: bool = True):
    """SiglipVisionModel and SiglipTextModel directories, as transformers saves them (unprefixed keys)."""
    hf = tiny_siglip(**CONFIGS["uneven"])
    vision = hf.vision_model
    if not use_head:
        config = hf.config.vision_config
        config.vision_use_head = False
        vision = randomize_(transformers.SiglipVisionModel(config), seed=5)
    vision.save_pretrained(tmp_path / "vision", safe_serialization=True)
    hf.text_model.save_pretrained(tmp_path / "text", safe_serialization=True)
    return vision.eval(), hf.text_model.eval()


@pytest.mark.parametrize("use_head", [True, False])
def test_siglip_towers_load_alone(use_head, tmp_path):
    hf_vision, hf_text = tower_dirs(tmp_path, use_head)
    vit, vit_vars = load_pretrained(tmp_path / "vision")
    text, text_vars = load_pretrained(tmp_path / "text")
    assert type(vit) is ViT and vit.pooling == ("map" if use_head else "none")
    assert type(text) is TextTransformer and text.projection_dim == 20

    px = images(hf_vision.config)
    ids, mask = text_batch(hf_text.config.vocab_size, hf_text.config.max_position_embeddings)
    with torch.no_grad():
        ref_v = hf_vision(pixel_values=torch.tensor(px))
        ref_t = hf_text(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    enc_v = jax.jit(vit.apply)(vit_vars, jnp.asarray(px.transpose(0, 2, 3, 1)))
    enc_t = jax.jit(text.apply)(text_vars, ids, mask)
    ref = {"text": {"last_hidden_state": ref_t.last_hidden_state.numpy(), "pooler_output": ref_t.pooler_output.numpy()}}
    ours = {"text": {"last_hidden_state": enc_t.tokens, "pooler_output": enc_t.pooled}}
    ref["vision"] = {"last_hidden_state": ref_v.last_hidden_state.numpy()}
    ours["vision"] = {"last_hidden_state": enc_v.tokens, "pooler_output": enc_v.pooled}
    if use_head:
        ref["vision"]["pooler_output"] = ref_v.pooler_output.numpy()
    else:
        assert ref_v.pooler_output is None
    diffs = assert_parity(ours, ref)
    print(f"SigLIP towers (use_head={use_head}) max abs diffs: {diffs}")


def test_transformers4_tower_layout_loads(tmp_path):
    """transformers 4 saved SiglipTextModel / SiglipVisionModel keys under `text_model.` / `vision_model.`."""
    tower_dirs(tmp_path)
    for part, prefix in (("vision", "vision_model."), ("text", "text_model.")):
        want = load_pretrained(tmp_path / part)[1]
        file = tmp_path / part / "model.safetensors"
        save_file({prefix + k: v for k, v in load_file(file).items()}, file, metadata={"format": "pt"})
        got = load_pretrained(tmp_path / part)[1]
        jax.tree.map(np.testing.assert_array_equal, got, want)


def mmjax_siglip(*, scan_image: bool) -> CLIP:
    vit = ViT(
        width=24,
        depth=2,
        mlp_dim=40,
        num_heads=3,
        patch_size=4,
        image_size=12,
        pooling="map",
        final_norm="all",
        activation="gelu_tanh",
        scan=scan_image,
    )
    text = TextTransformer(
        vocab_size=64,
        width=20,
        depth=2,
        num_heads=4,
        mlp_dim=30,
        max_length=12,
        activation="gelu_tanh",
        layer_norm_eps=1e-6,
        causal=False,
        pool="last_position",
        projection_dim=24,
    )
    return CLIP(vit, text, embed_dim=None, logit_scale_init=math.log(10), logit_bias_init=-10.0)


def test_mmjax_siglip_exports_to_transformers(tmp_path):
    model = mmjax_siglip(scan_image=True)
    px = np.random.default_rng(1).normal(size=(2, 3, 12, 12)).astype(np.float32)
    ids, mask = text_batch(64, 12)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(px.transpose(0, 2, 3, 1)), ids, mask)
    variables = {"params": perturb_params(nn.meta.unbox(shapes["params"]), seed=1)}
    save_pretrained(model, variables, tmp_path)

    hf, info = transformers.SiglipModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    diffs = assert_parity(run_siglip(model, variables, px, ids, mask), siglip_reference(hf.eval(), px, ids, mask))
    print(f"mmjax -> transformers SigLIP max abs diffs: {diffs}")


def assert_same_state_dict(want: dict, got: dict):
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)


@pytest.mark.parametrize("scan", [False, True])
def test_transformers_siglip_round_trips_state_dict(scan, tmp_path):
    hf = tiny_siglip(**CONFIGS["uneven"])
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=scan)
    save_pretrained(model, variables, tmp_path / "ours")
    back = transformers.SiglipModel.from_pretrained(tmp_path / "ours")
    assert_same_state_dict(hf.state_dict(), back.state_dict())
    assert back.config.text_config.projection_size == 20
    assert back.config.vision_config.hidden_act == "quick_gelu"


@pytest.mark.parametrize("part", ["full", "vision", "text"])
def test_mmjax_convert_cli_round_trips_siglip_dirs(part, tmp_path, capsys):
    """`mmjax convert --path DIR --to DIR2`: transformers loads DIR2 with every tensor bit-identical."""
    if part == "full":
        tiny_siglip(**CONFIGS["odd"]).save_pretrained(tmp_path / "hf", safe_serialization=True)
        cls = transformers.SiglipModel
    else:
        tower_dirs(tmp_path)
        (tmp_path / part).rename(tmp_path / "hf")
        cls = transformers.SiglipVisionModel if part == "vision" else transformers.SiglipTextModel
    assert cli_main(["convert", "--path", str(tmp_path / "hf"), "--to", str(tmp_path / "ours")]) == 0
    assert '"converted"' in capsys.readouterr().out
    want, (got, info) = (
        cls.from_pretrained(tmp_path / "hf"),
        cls.from_pretrained(tmp_path / "ours", output_loading_info=True),
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert_same_state_dict(want.state_dict(), got.state_dict())


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.clone(embed_dim=16), "embed_dim.*logit_bias_init"),
        (lambda m: m.clone(image_tower=m.image_tower.clone(pooling="tok")), "pooling"),
        (lambda m: m.clone(image_tower=m.image_tower.clone(pre_norm=True)), "pre_norm"),
        (lambda m: m.clone(image_tower=m.image_tower.clone(final_norm="pooled")), "final_norm"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(causal=True)), "causal"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(pool="last")), "pool"),
        (lambda m: m.clone(text_tower=m.text_tower.clone(projection_dim=None)), "projection_dim"),
        (lambda m: m.image_tower.clone(pooling="gap"), "pooling"),
        (lambda m: m.text_tower.clone(causal=True), "causal"),
    ],
)
def test_export_refuses_what_transformers_cannot_represent(change, field, tmp_path):
    with pytest.raises(ValueError, match=field):
        save_pretrained(change(mmjax_siglip(scan_image=False)), {"params": {}}, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_siglip_model_without_vision_head_is_refused(tmp_path):
    hf = tiny_siglip(layers=1)
    hf.config.vision_config.vision_use_head = False
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vision_use_head"):
        load_pretrained(tmp_path)
