"""ASTModel / ASTForAudioClassification parity with Hugging Face transformers, and export back to transformers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, perturb_params, randomize_  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import AST  # noqa: E402
from mmjax.models import ASTForAudioClassification, ASTModel  # noqa: E402

# Odd sizes: 3 heads of 16, MLP 70, 24 mel bins x 37 frames, 6x6 patches with strides (5, 4): a 4 x 8 grid of
# patches overlapping along both axes, and 3 trailing frames no patch covers (VALID convolution).
TINY = dict(
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=70,
    num_mel_bins=24,
    max_length=37,
    patch_size=6,
    frequency_stride=5,
    time_stride=4,
    layer_norm_eps=1e-6,
)


def tiny_ast(cls_name: str = "ASTModel", seed: int = 0, **overrides):
    config = transformers.ASTConfig(**{**TINY, **overrides, "num_labels": 5})
    return randomize_(getattr(transformers, cls_name)(config), seed)


def spectrograms(config, seed: int = 0, batch: int = 2) -> np.ndarray:
    shape = (batch, config.max_length, config.num_mel_bins)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def reference(hf, x: np.ndarray) -> dict:
    with torch.no_grad():
        out = hf(input_values=torch.tensor(x))
    if isinstance(out, transformers.modeling_outputs.SequenceClassifierOutput):
        with torch.no_grad():
            tower = hf.audio_spectrogram_transformer(input_values=torch.tensor(x))
        return {
            "logits": out.logits.numpy(),
            "last_hidden_state": tower.last_hidden_state.numpy(),
            "pooler_output": tower.pooler_output.numpy(),
        }
    return {"last_hidden_state": out.last_hidden_state.numpy(), "pooler_output": out.pooler_output.numpy()}


def run(model, variables, x: np.ndarray) -> dict:
    return jax.device_get(jax.jit(lambda v, x: model.apply(v, input_values=x))(variables, jnp.asarray(x)))


@pytest.mark.parametrize("cls_name", ["ASTModel", "ASTForAudioClassification"])
def test_ast_matches_transformers(cls_name, tmp_path):
    hf = tiny_ast(cls_name)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    assert type(model).__name__ == cls_name
    assert model.ast.grid == (4, 8)
    assert variables["params"]["ast"]["pos_embedding"].shape == (2 + 32, 48)
    x = spectrograms(hf.config)
    diffs = assert_parity(run(model, variables, x), reference(hf, x))
    print(f"{cls_name} max abs diffs: {diffs}")


def test_ast_scan_load_matches_transformers(tmp_path):
    hf = tiny_ast("ASTForAudioClassification", seed=2, hidden_act="gelu_new")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path, scan=True)
    assert model.ast.scan and model.ast.activation == "gelu_tanh"
    assert variables["params"]["ast"]["encoder"]["layers"]["attn"]["query"]["kernel"].shape == (2, 48, 3, 16)
    x = spectrograms(hf.config, seed=1, batch=3)
    diffs = assert_parity(run(model, variables, x), reference(hf, x))
    print(f"ASTForAudioClassification scan=True max abs diffs: {diffs}")


@pytest.mark.parametrize("scan", [False, True])
def test_transformers_ast_round_trips(scan, tmp_path):
    hf = tiny_ast("ASTForAudioClassification", seed=3)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=scan)
    save_pretrained(model, variables, tmp_path / "ours")
    back, info = transformers.ASTForAudioClassification.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    want, got = hf.state_dict(), back.state_dict()
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    x = spectrograms(hf.config, seed=4)
    np.testing.assert_array_equal(reference(back.eval(), x)["logits"], reference(hf, x)["logits"])


def test_mmjax_ast_exports_to_transformers(tmp_path):
    ast = AST(
        width=36,
        depth=1,
        mlp_dim=50,
        num_heads=4,
        patch_size=5,
        frequency_stride=3,
        time_stride=6,
        num_mel_bins=17,
        max_length=29,
        layer_norm_eps=1e-5,
    )
    model = ASTModel(ast)
    x = spectrograms(ast, seed=5)
    # Shapes from eval_shape, values all redrawn: LayerNorms and positions far from their initial values.
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(x))
    variables = {"params": perturb_params(nn.meta.unbox(shapes["params"]), seed=1)}
    save_pretrained(model, variables, tmp_path)
    hf, info = transformers.ASTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert (hf.config.frequency_stride, hf.config.time_stride) == (3, 6)
    diffs = assert_parity(run(model, variables, x), reference(hf.eval(), x))
    print(f"mmjax -> transformers ASTModel max abs diffs: {diffs}")


def test_ast_refuses_what_it_cannot_reproduce(tmp_path):
    tiny_ast("ASTModel", qkv_bias=False).save_pretrained(tmp_path / "nobias", safe_serialization=True)
    with pytest.raises(ValueError, match="qkv_bias"):
        load_pretrained(tmp_path / "nobias")
    model = ASTForAudioClassification(AST(width=12, depth=1, num_heads=2, interpolate_pos_embed=True), 3)
    with pytest.raises(ValueError, match="interpolate_pos_embed"):
        save_pretrained(model, {"params": {}}, tmp_path / "out")
