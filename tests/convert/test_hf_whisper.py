"""The encoder of WhisperModel / WhisperForConditionalGeneration: parity with transformers, shorter inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, randomize_  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
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


def test_whisper_encoder_does_not_export(tmp_path):
    tiny_whisper().save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf")
    with pytest.raises(ValueError, match="decoder"):
        save_pretrained(model, variables, tmp_path / "out")
