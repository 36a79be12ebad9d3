"""VideoMAE, ViViT and TimeSformer (Model and ForVideoClassification) parity with transformers, and export back."""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, randomize_  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import DividedVideoViT, VideoViT  # noqa: E402
from mmjax.models import VideoClassifier  # noqa: E402

# Odd sizes: width 48 in 3 heads, MLP 61, 24 px frames in 8 px patches (9 per frame), 3 frames in tubelets of 1
# (27 tokens) or 4 frames in tubelets of 2 (18 tokens), 5 classes. TimeSformer embeds every frame (tubelet 1).
CONFIGS = {
    "t1_f3": dict(num_frames=3, tubelet_size=1),
    "t2_f4": dict(num_frames=4, tubelet_size=2),
}


def tiny_videomae(cls, *, num_frames, tubelet_size, use_mean_pooling=True, seed=0):
    config = transformers.VideoMAEConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=61,
        image_size=24,
        patch_size=8,
        num_frames=num_frames,
        tubelet_size=tubelet_size,
        use_mean_pooling=use_mean_pooling,
        num_labels=5,
    )
    return randomize_(cls(config), seed)


def tiny_vivit(cls, *, num_frames, tubelet_size, seed=0):
    config = transformers.VivitConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=61,
        image_size=24,
        num_frames=num_frames,
        tubelet_size=[tubelet_size, 8, 8],
        num_labels=5,
    )
    return randomize_(cls(config), seed)


def tiny_timesformer(cls, *, num_frames, seed=0, **_):
    config = transformers.TimesformerConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=61,
        image_size=24,
        patch_size=8,
        num_frames=num_frames,
        num_labels=5,
    )
    return randomize_(cls(config), seed)


def time_major(tokens, num_frames):
    """TimeSformer's (row, column, time) patch order -> mmjax's (time, row, column), class token first."""
    b, n, d = tokens.shape
    patches = tokens[:, 1:].reshape(b, (n - 1) // num_frames, num_frames, d).transpose(0, 2, 1, 3)
    return np.concatenate([tokens[:, :1], patches.reshape(b, n - 1, d)], axis=1)


def pixel_values(config, seed=1):
    """HF layout [B, T, C, H, W] and the same values as mmjax's NTHWC."""
    rng = np.random.default_rng(seed)
    px = rng.normal(size=(2, config.num_frames, 3, config.image_size, config.image_size)).astype(np.float32)
    return px, px.transpose(0, 1, 3, 4, 2)


def reference(hf, px) -> dict:
    """last_hidden_state (the classifier's from its tower, TimeSformer's reordered to time-major), the classifier's
    logits, VivitModel's pooler_output."""
    px = torch.tensor(px)
    with torch.no_grad():
        tower = getattr(hf, "videomae", None) or getattr(hf, "vivit", None) or getattr(hf, "timesformer", None)
        out = (tower or hf)(pixel_values=px)
        ref = {"last_hidden_state": out.last_hidden_state.numpy()}
        if hf.config.model_type == "timesformer":
            ref["last_hidden_state"] = time_major(ref["last_hidden_state"], hf.config.num_frames)
        if tower is not None:
            ref["logits"] = hf(pixel_values=px).logits.numpy()
        elif getattr(out, "pooler_output", None) is not None:
            ref["pooler_output"] = out.pooler_output.numpy()
        return ref


def ours(model, variables, videos) -> dict:
    out = model.apply(variables, videos)
    if isinstance(model, VideoClassifier):
        return {"logits": out["logits"], "last_hidden_state": out["last_hidden_state"]}
    return {"last_hidden_state": out.tokens, "pooler_output": out.pooled}


CASES = [
    ("VideoMAEModel", "t1_f3", True),
    ("VideoMAEModel", "t2_f4", False),
    ("VideoMAEForVideoClassification", "t1_f3", True),
    ("VideoMAEForVideoClassification", "t2_f4", True),
    ("VivitModel", "t1_f3", None),
    ("VivitModel", "t2_f4", None),
    ("VivitForVideoClassification", "t2_f4", None),
    ("TimesformerModel", "t1_f3", None),
    ("TimesformerForVideoClassification", "t2_f4", None),
]


@pytest.mark.parametrize("arch, name, mean_pooling", CASES)
def test_video_models_match_transformers_and_round_trip(arch, name, mean_pooling, tmp_path):
    cls = getattr(transformers, arch)
    if arch.startswith("Vivit"):
        hf = tiny_vivit(cls, **CONFIGS[name])
    elif arch.startswith("Timesformer"):
        hf = tiny_timesformer(cls, **CONFIGS[name])
    else:
        hf = tiny_videomae(cls, **CONFIGS[name], use_mean_pooling=mean_pooling)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    px, videos = pixel_values(hf.config)
    ref = reference(hf, px)
    assert all(np.abs(v).max() > 0.3 for v in ref.values())  # non-trivial outputs, so 1e-4 means something

    model, variables = load_pretrained(tmp_path / "hf")
    assert isinstance(model, VideoClassifier if arch.endswith("Classification") else VideoViT)
    assert isinstance(getattr(model, "tower", model), DividedVideoViT) == arch.startswith("Timesformer")
    got = ours(model, variables, videos)
    diffs = assert_parity(got, ref)
    print(f"{arch} {name}: {diffs}")

    save_pretrained(model, variables, tmp_path / "back")
    back = cls.from_pretrained(tmp_path / "back").eval()
    assert_parity(reference(back, px), ref, atol=1e-6)


def test_old_bias_names_load(tmp_path):
    """Checkpoints from before the rename store `attention.attention.q_bias` / `v_bias`."""
    hf = tiny_videomae(transformers.VideoMAEModel, **CONFIGS["t1_f3"])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    tensors = load_file(tmp_path / "model.safetensors")
    renamed = {
        k.replace("attention.query.bias", "q_bias").replace("attention.value.bias", "v_bias"): v
        for k, v in tensors.items()
    }
    assert any(k.endswith("q_bias") for k in renamed)
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model, variables = load_pretrained(tmp_path)
    px, videos = pixel_values(hf.config)
    assert_parity(ours(model, variables, videos), reference(hf, px))


def test_export_refuses_what_videomae_cannot_represent(tmp_path):
    vit = VideoViT(width=48, depth=1, num_heads=3, patch_size=8, image_size=24, num_frames=4)  # learned, class token
    variables = vit.init(jax.random.key(0), np.zeros((1, 4, 24, 24, 3), np.float32))
    with pytest.raises(ValueError, match="cannot export VideoViT to Hugging Face"):
        save_pretrained(vit, variables, tmp_path)
    with pytest.raises(ValueError, match=r"VideoViT.pooling='tok'"):
        save_pretrained(vit.clone(posemb="sincos"), variables, tmp_path)


def test_vivit_in_memory_names_load(tmp_path):
    """transformers 5 writes ViViT files in the older `encoder.layer.{i}.attention.attention.*` layout; a state
    dict taken from memory (`layers.{i}.attention.q_proj`, `.mlp.fc1`, ...) loads too."""
    hf = tiny_vivit(transformers.VivitModel, **CONFIGS["t2_f4"])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    state = {k: v.numpy() for k, v in hf.state_dict().items()}
    assert any(".q_proj." in k for k in state)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model, variables = load_pretrained(tmp_path)
    px, videos = pixel_values(hf.config)
    assert_parity(ours(model, variables, videos), reference(hf, px))


def test_scanned_load_and_save(tmp_path):
    """scan=True stacks the layers (one compiled block); the rule tables are written unscanned and still apply."""
    hf = tiny_vivit(transformers.VivitForVideoClassification, **CONFIGS["t1_f3"])
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=True)
    assert "layers" in variables["params"]["tower"]["encoder"]
    px, videos = pixel_values(hf.config)
    ref = reference(hf, px)
    assert_parity(ours(model, variables, videos), ref)
    save_pretrained(model, variables, tmp_path / "back")
    back = transformers.VivitForVideoClassification.from_pretrained(tmp_path / "back").eval()
    assert_parity(reference(back, px), ref, atol=1e-6)
