"""AudioVisual: a clip and a soundtrack embedded apart, in one space; time-shifted soundtracks as negatives."""

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.encoders import build_tower
from mmjax.models import AudioVisual, time_shifted


def test_time_shifted_rolls_every_waveform_by_the_same_samples():
    waves = jnp.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(time_shifted(waves, 3)[:, :3], waves[:, 3:])


def test_embeddings_are_unit_vectors_and_similarity_is_scaled_cosine():
    model = AudioVisual(
        video_tower=build_tower("frame_vit", width=16, depth=1, num_heads=2, patch_size=8, image_size=16, num_frames=2),
        audio_tower=build_tower("ast", frontend="ast", num_mel_bins=16, max_length=23, width=16, depth=1, num_heads=2),
        embed_dim=8,
    )
    clip = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 2, 16, 16, 3)), jnp.float32)
    waves = jnp.asarray(0.3 * np.random.default_rng(1).standard_normal((3, 4000)), jnp.float32)
    variables = model.init(jax.random.key(0), clip, waves)
    assert {"video_tower", "audio_tower", "video_projection", "audio_projection", "logit_scale"} == set(
        variables["params"]
    )
    out = model.apply(variables, clip, waves)
    for key in ("video_embeds", "audio_embeds"):
        assert out[key].shape == (3, 8)
        np.testing.assert_allclose(jnp.linalg.norm(out[key], axis=-1), 1.0, rtol=1e-5)
    sim = model.apply(variables, out["video_embeds"], out["audio_embeds"], method="similarity")
    np.testing.assert_allclose(sim, 10.0 * out["video_embeds"] @ out["audio_embeds"].T, rtol=1e-5)


def test_the_sound_localizer_gives_a_heatmap_per_frame_and_clip_scores_from_its_maximum():
    from mmjax.models import SoundLocalizer

    model = SoundLocalizer(
        frame_tower=build_tower("vit", width=16, depth=1, num_heads=2, patch_size=4, image_size=16),
        audio_tower=build_tower("ast", frontend="ast", num_mel_bins=16, max_length=23, width=16, depth=1, num_heads=2),
        grid=(4, 4),
        embed_dim=8,
    )
    frames = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 16, 16, 3)), jnp.float32)
    waves = jnp.asarray(0.3 * np.random.default_rng(1).standard_normal((3, 4000)), jnp.float32)
    variables = model.init(jax.random.key(0), frames, waves)
    maps = model.apply(variables, frames, waves)
    assert maps.shape == (3, 4, 4)
    patches = model.apply(variables, frames, method="encode_patches")  # [3, 16, 8]: 3 clips of one frame
    audio = model.apply(variables, waves, method="encode_audio")
    scores = model.apply(variables, patches[:, None], audio, method="clip_scores")  # [3, 3]
    np.testing.assert_allclose(jnp.diagonal(scores), maps.reshape(3, -1).max(-1), rtol=1e-5)
