"""The encoder of WhisperModel / WhisperForConditionalGeneration: parity with transformers, shorter inputs, and
export back to transformers (encoder weights only; transformers initialises the decoder)."""

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
from mmjax.encoders import WhisperEncoder  # noqa: E402
from mmjax.models import WhisperEncoderModel  # noqa: E402

# Odd sizes: 3 heads of 16, MLP 70, 24 mel bins, 15 positions (30 frames), a 1-layer decoder to be skipped.
TINY = dict(
    d_model=48,
    encoder_layers=2,
    decoder_layers=1,
    encoder_attention_heads=3,
    decoder_attention_heads=3,
    encoder_ffn_dim=70,
    decoder_ffn_dim=38,
    num_mel_bins=24,
    max_source_positions=15,
    max_target_positions=8,
    vocab_size=50,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=3,
    decoder_start_token_id=2,
)


def tiny_whisper(cls_name: str = "WhisperModel", seed: int = 0, **overrides):
    # randomize_ also redraws the position table: mmjax must take it from the checkpoint, not recompute it.
    return randomize_(getattr(transformers, cls_name)(transformers.WhisperConfig(**{**TINY, **overrides})), seed)


def features(seed: int = 0, frames: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, TINY["num_mel_bins"], frames)).astype(np.float32)


def run(model, variables, x):
    return jax.device_get(jax.jit(lambda v, x: model.apply(v, input_features=x))(variables, jnp.asarray(x)))


def encoder_of(hf):
    return hf.model.encoder if hasattr(hf, "model") else hf.encoder


@pytest.mark.parametrize("cls_name", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_whisper_encoder_matches_transformers(cls_name, tmp_path):
    hf = tiny_whisper(cls_name)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    assert isinstance(model, WhisperEncoderModel)
    assert "bias" not in variables["params"]["encoder"]["encoder"]["layer_0"]["attn"]["key"]
    x = features()
    with torch.no_grad():
        want = encoder_of(hf)(input_features=torch.tensor(x)).last_hidden_state.numpy()
    diffs = assert_parity(run(model, variables, x), {"last_hidden_state": want})
    print(f"{cls_name} encoder max abs diffs: {diffs}")


def test_whisper_encoder_takes_shorter_inputs(tmp_path):
    hf = tiny_whisper(seed=1, activation_function="gelu_new")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path, scan=True)
    x = features(seed=2, frames=17)
    out = run(model, variables, x)
    assert out["last_hidden_state"].shape == (2, 9, 48)
    # transformers' WhisperEncoder refuses anything but 2 * max_source_positions frames, so its modules are run
    # by hand on the 17 frames (9 positions after the stride-2 convolution).
    enc = encoder_of(hf)
    with torch.no_grad():
        h = torch.nn.functional.gelu(enc.conv1(torch.tensor(x)))
        h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1) + enc.embed_positions.weight[:9]
        for layer in enc.layers:
            h = layer(h, None)
        want = enc.layer_norm(h).numpy()
    diffs = assert_parity(out, {"last_hidden_state": want})
    print(f"Whisper encoder, 17 frames, scan=True max abs diffs: {diffs}")
    with pytest.raises(ValueError, match="positions"):
        model.apply(variables, input_features=jnp.zeros((1, 24, 32)))


@pytest.mark.parametrize("scan", [False, True])
def test_whisper_encoder_round_trips(scan, tmp_path):
    hf = tiny_whisper("WhisperForConditionalGeneration", seed=3)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=scan)
    save_pretrained(model, variables, tmp_path / "ours")
    # load -> save -> load in mmjax: the same model and bit-identical parameters.
    back, back_vars = load_pretrained(tmp_path / "ours", scan=scan)
    assert back == model
    want, got = jax.tree.leaves_with_path(variables), jax.tree.leaves_with_path(back_vars)
    assert [p for p, _ in want] == [p for p, _ in got]
    for (path, w), (_, g) in zip(want, got):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=jax.tree_util.keystr(path))
    # transformers -> mmjax -> transformers: the encoder's tensors come back bit-identical.
    want, got = encoder_of(hf).state_dict(), transformers.WhisperModel.from_pretrained(tmp_path / "ours").encoder
    assert sorted(want) == sorted(got.state_dict())
    for key, value in got.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), want[key].numpy(), err_msg=key)


@pytest.mark.parametrize(
    "cls_name", ["WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification"]
)
def test_mmjax_whisper_encoder_exports_to_transformers(cls_name, tmp_path):
    # Odd sizes unlike TINY's: 4 heads of 9, MLP left to 4 x width, 17 mel bins, 11 positions (22 frames).
    enc = WhisperEncoder(width=36, depth=2, num_heads=4, num_mel_bins=17, max_positions=11, activation="gelu_tanh")
    model = WhisperEncoderModel(enc)
    x = np.random.default_rng(4).normal(size=(2, 17, 22)).astype(np.float32)
    # Every value redrawn, the position table included: transformers must keep it, not rewrite its sinusoids.
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(x))
    variables = {"params": perturb_params(nn.meta.unbox(shapes["params"]), seed=5)}
    save_pretrained(model, variables, tmp_path)
    hf, info = getattr(transformers, cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    # Only what is not the encoder (decoder, heads) is missing, and transformers initialised it.
    assert info["missing_keys"] and not any(
        k.removeprefix("model.").startswith("encoder.") for k in info["missing_keys"]
    )
    c = hf.config
    assert (c.encoder_ffn_dim, c.activation_function, c.decoder_layers, c.vocab_size) == (144, "gelu_new", 1, 51865)
    table = variables["params"]["encoder"]["pos_embedding"]
    np.testing.assert_array_equal(encoder_of(hf).embed_positions.weight.detach().numpy(), table)
    with torch.no_grad():
        want = encoder_of(hf.eval())(input_features=torch.tensor(x)).last_hidden_state.numpy()
    diffs = assert_parity(run(model, variables, x), {"last_hidden_state": want})
    print(f"mmjax -> transformers {cls_name} encoder max abs diffs: {diffs}")


def test_whisper_encoder_refuses_what_it_cannot_export(tmp_path):
    model = WhisperEncoderModel(WhisperEncoder(width=12, depth=1, num_heads=2, layer_norm_eps=1e-6))
    with pytest.raises(ValueError, match="layer_norm_eps"):
        save_pretrained(model, {"params": {}}, tmp_path)
