"""open_clip checkpoints into mmjax's CLIP, checked against Hugging Face's CLIPModel.

Why not open_clip itself: open_clip_torch cannot be installed here, because pip would pull a CUDA build of torch
with it. open_clip's CLIP (its VisionTransformer and TextTransformer) computes what transformers' CLIPModel
computes, under a standard renaming of the weights (the one transformers' own convert_clip_original_pytorch_to_hf
script applies in reverse). So the oracle is a random CLIPModel whose state dict `to_open_clip` writes, by hand and
independently of mmjax's rules, in open_clip's key layout, next to an open_clip_config.json.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import tiny_clip  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from test_hf_clip import check_against_hf, text_batch  # noqa: E402

from mmjax.cli import main as cli_main  # noqa: E402
from mmjax.convert import CheckpointFormatError, CheckpointMismatchError, load_pretrained  # noqa: E402

# Sizes open_clip can express: heads = width // head_width, MLP width = int(width * mlp_ratio).
HF_KWARGS = dict(
    text_width=20, text_heads=5, vision_width=36, vision_heads=3, text_mlp=50, vision_mlp=81, eos_token_id=2
)
MODEL_CFG = {
    "embed_dim": 12,
    "vision_cfg": {"image_size": 16, "layers": 2, "width": 36, "head_width": 12, "patch_size": 4, "mlp_ratio": 2.25},
    "text_cfg": {"context_length": 12, "vocab_size": 64, "width": 20, "heads": 5, "layers": 2, "mlp_ratio": 2.5},
}


def to_open_clip(hf) -> dict[str, np.ndarray]:
    """A Hugging Face CLIPModel's weights under open_clip's names."""
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    out = {}

    def copy(oc, key):
        out[f"{oc}.weight"], out[f"{oc}.bias"] = sd[f"{key}.weight"], sd[f"{key}.bias"]

    def resblocks(oc, key, n):
        for i in range(n):
            o, h = f"{oc}.resblocks.{i}", f"{key}.layers.{i}"
            copy(f"{o}.ln_1", f"{h}.layer_norm1")
            copy(f"{o}.ln_2", f"{h}.layer_norm2")
            copy(f"{o}.mlp.c_fc", f"{h}.mlp.fc1")
            copy(f"{o}.mlp.c_proj", f"{h}.mlp.fc2")
            copy(f"{o}.attn.out_proj", f"{h}.self_attn.out_proj")
            for part in ("weight", "bias"):
                qkv = [sd[f"{h}.self_attn.{p}_proj.{part}"] for p in "qkv"]
                out[f"{o}.attn.in_proj_{part}"] = np.concatenate(qkv, axis=0)

    v, t = "vision_model", "text_model"
    out["visual.conv1.weight"] = sd[f"{v}.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = sd[f"{v}.embeddings.class_embedding"]
    out["visual.positional_embedding"] = sd[f"{v}.embeddings.position_embedding.weight"]
    copy("visual.ln_pre", f"{v}.pre_layrnorm")
    resblocks("visual.transformer", f"{v}.encoder", hf.config.vision_config.num_hidden_layers)
    copy("visual.ln_post", f"{v}.post_layernorm")
    out["visual.proj"] = sd["visual_projection.weight"].T  # open_clip: pooled @ proj
    out["token_embedding.weight"] = sd[f"{t}.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd[f"{t}.embeddings.position_embedding.weight"]
    resblocks("transformer", f"{t}.encoder", hf.config.text_config.num_hidden_layers)
    copy("ln_final", f"{t}.final_layer_norm")
    out["text_projection"] = sd["text_projection.weight"].T
    out["logit_scale"] = sd["logit_scale"]
    return {k: a.copy(order="C") for k, a in out.items()}  # (np.ascontiguousarray makes 0-d arrays [1])


def write_open_clip(path, tensors, model_cfg=None, weights_name="open_clip_model.safetensors"):
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path / weights_name)
    config = {"model_cfg": model_cfg or MODEL_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (path / "open_clip_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("act", ["gelu", "quick_gelu"])
def test_open_clip_matches_transformers(act, tmp_path):
    hf = tiny_clip(**HF_KWARGS, text_act=act, vision_act=act)
    write_open_clip(tmp_path, to_open_clip(hf), {**MODEL_CFG, "quick_gelu": act == "quick_gelu"})
    model, variables = load_pretrained(tmp_path)
    assert model.text_tower.pool == "argmax" and model.image_tower.activation == act
    diffs = check_against_hf(hf, model, variables, eos_token_id=2)
    print(f"open_clip ({act}) max abs diffs: {diffs}")

    # open_clip passes no padding mask: under the causal mask the embeddings do not depend on it.
    ids, mask = text_batch(2)
    with_mask = model.apply(variables, ids, mask, method=model.encode_text)
    without = model.apply(variables, ids, method=model.encode_text)
    np.testing.assert_allclose(with_mask, without, atol=1e-6)


def test_open_clip_key_prefixes_buffers_and_file_names(tmp_path):
    """CustomTextCLIP's `text.` prefix, DDP's `module.`, an old persistent attn_mask, any *.safetensors name."""
    tensors = to_open_clip(tiny_clip(**HF_KWARGS, text_act="gelu", vision_act="gelu"))
    write_open_clip(tmp_path / "plain", tensors)
    text_keys = ("token_embedding", "positional_embedding", "transformer.", "ln_final", "text_projection")
    renamed = {("text." if k.startswith(text_keys) else "") + k: v for k, v in tensors.items()}
    renamed = {"module." + k: v for k, v in renamed.items()}
    renamed["attn_mask"] = np.triu(np.full((12, 12), -np.inf, np.float32), 1)
    write_open_clip(
        tmp_path / "custom", renamed, {**MODEL_CFG, "custom_text": True}, weights_name="epoch_32.safetensors"
    )
    want = load_pretrained(tmp_path / "plain")[1]
    got = load_pretrained(tmp_path / "custom")[1]
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_mmjax_convert_writes_open_clip_as_transformers_clip(tmp_path, capsys):
    """`mmjax convert` on an open_clip directory writes a CLIPModel with the original tensors, bit for bit."""
    hf = tiny_clip(**HF_KWARGS, text_act="gelu", vision_act="gelu")
    write_open_clip(tmp_path / "oc", to_open_clip(hf))
    assert cli_main(["convert", "--path", str(tmp_path / "oc"), "--to", str(tmp_path / "hf")]) == 0
    assert '"model": "CLIP"' in capsys.readouterr().out
    back, info = transformers.CLIPModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    want, got = hf.state_dict(), back.state_dict()
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)


@pytest.fixture
def oc_dir(tmp_path):
    write_open_clip(tmp_path, to_open_clip(tiny_clip(**HF_KWARGS, layers=1)), {**MODEL_CFG})
    return tmp_path


def _edit_cfg(path, edit):
    config = json.loads((path / "open_clip_config.json").read_text())
    edit(config["model_cfg"])
    (path / "open_clip_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["vision_cfg"].update(timm_model_name="vit_base_patch16_224"), "timm_model_name"),
        (lambda c: c["vision_cfg"].update(layers=[1, 1, 1, 1]), "ModifiedResNet"),
        (lambda c: c["vision_cfg"].update(ls_init_value=1e-5), "ls_init_value"),
        (lambda c: c["text_cfg"].update(hf_model_name="xlm-roberta-base"), "hf_model_name"),
        (lambda c: c["text_cfg"].update(new_option=1), r"keys mmjax does not know: \['new_option'\]"),
        (lambda c: c["text_cfg"].update(norm_kwargs={"elementwise_affine": False}), "norm_kwargs"),
    ],
)
def test_unsupported_open_clip_configs_are_refused(oc_dir, edit, message):
    _edit_cfg(oc_dir, edit)
    with pytest.raises(ValueError, match=message):
        load_pretrained(oc_dir)


def test_open_clip_weight_mismatches_and_pickles(oc_dir):
    # The config says two layers, the weights hold one: listed in open_clip's names, with shapes.
    _edit_cfg(oc_dir, lambda c: c["vision_cfg"].update(layers=2))
    with pytest.raises(
        CheckpointMismatchError, match=r"visual\.transformer\.resblocks\.1\.attn\.in_proj_weight: \[108, 36\]"
    ):
        load_pretrained(oc_dir)
    (oc_dir / "open_clip_model.safetensors").rename(oc_dir / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointFormatError, match="pickle"):
        load_pretrained(oc_dir)
