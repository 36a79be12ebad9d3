"""Users' own media files: audio through soundfile, video through PyAV, and every way a file can be bad named."""

import numpy as np
import pytest
import soundfile

from mmjax.data import media
from mmjax.data import moving_shapes as ms


def test_audio_is_mono_float32_at_the_asked_rate(tmp_path):
    t = np.arange(44_100) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    soundfile.write(tmp_path / "a.wav", stereo, 44_100)
    audio = media.read_audio(tmp_path / "a.wav", rate=16_000)
    assert audio.dtype == np.float32 and audio.shape == (16_000,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16_000 / audio.size - 440) < 2  # the tone survives resampling
    soundfile.write(tmp_path / "b.flac", stereo[:, 0], 16_000)
    # a file at the asked rate is read as is (16-bit FLAC: within its quantisation step)
    np.testing.assert_allclose(media.read_audio(tmp_path / "b.flac"), stereo[:, 0], atol=1e-4)


def test_bad_audio_files_are_named(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    with pytest.raises(media.MediaError, match=r"corrupt.wav: not a readable audio file"):
        media.read_audio(tmp_path / "corrupt.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros((0,)), 16_000)
    with pytest.raises(media.MediaError, match=r"empty.wav: the audio is empty"):
        media.read_audio(tmp_path / "empty.wav")
    soundfile.write(tmp_path / "short.wav", np.zeros(800), 16_000)
    with pytest.raises(media.MediaError, match=r"short.wav: 0.05 s of audio, expected at least 1.0 s"):
        media.read_audio(tmp_path / "short.wav", min_seconds=1.0)


def test_frame_sampling_uniform_or_a_random_segment():
    np.testing.assert_array_equal(media.frame_indices(10, 4), [0, 3, 6, 9])
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = media.frame_indices(30, 4, stride=2, rng=rng)
        assert idx[0] >= 0 and idx[-1] < 30 and (np.diff(idx) == 2).all()
    with pytest.raises(ValueError, match="3 frames, expected at least 4"):
        media.frame_indices(3, 4)


def test_a_written_clip_reads_back(tmp_path):
    clip = ms.generate(0, "train", 1, image_size=32, num_frames=8)["video"]
    media.write_video(tmp_path / "c.mp4", clip)
    back = media.read_video(tmp_path / "c.mp4", 8)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - clip).mean() < 8  # H.264 is lossy; the motion is all there
    assert media.read_video(tmp_path / "c.mp4", 4, size=16).shape == (4, 16, 16, 3)


def test_bad_videos_are_named(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(media.MediaError, match=r"corrupt.mp4: not a readable video"):
        media.read_video(tmp_path / "corrupt.mp4", 4)
    media.write_video(tmp_path / "short.mp4", ms.generate(0, "train", 1)["video"][:3])
    with pytest.raises(media.MediaError, match=r"short.mp4: 3 frames, expected at least 8"):
        media.read_video(tmp_path / "short.mp4", 8)
    soundfile.write(tmp_path / "sound.wav", np.zeros(1600), 16_000)
    with pytest.raises(media.MediaError, match=r"sound.wav: no video stream"):
        media.read_video(tmp_path / "sound.wav", 4)


def test_a_whole_clip_is_read_spread_evenly_over_its_frames(tmp_path):
    """read_clip keeps at most max_frames, evenly spaced, holding only ~2 x max_frames frames at any time."""
    grey = np.repeat(np.arange(0, 250, 5, dtype=np.uint8), 16 * 16 * 3).reshape(50, 16, 16, 3)  # frame i: 5 * i
    media.write_video(tmp_path / "ramp.mp4", grey)
    clip = media.read_clip(tmp_path / "ramp.mp4", 8, size=8)
    assert clip.shape == (8, 8, 8, 3) and clip.dtype == np.uint8
    levels = clip.reshape(8, -1).mean(1) / 5  # which frame each kept one is
    assert levels[0] < 1 and levels[-1] > 40 and (np.diff(levels) > 3).all(), levels
    assert media.read_clip(tmp_path / "ramp.mp4", 64).shape == (50, 16, 16, 3)  # short enough: every frame
    with pytest.raises(media.MediaError, match=r"ramp.mp4: 50 frames, expected at least 60") as e:
        media.read_clip(tmp_path / "ramp.mp4", 64, min_frames=60)
    assert e.value.kind == "too short"


def test_a_folder_of_frames_is_a_clip_in_name_order(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for i in (2, 0, 1):  # written out of order: names decide
        Image.fromarray(np.full((12, 20, 3), 60 * i, np.uint8)).save(folder / f"frame_{i:03d}.png")
    (folder / ".DS_Store").write_bytes(b"not a frame")
    clip = media.read_clip(folder, 8, size=6)
    assert clip.shape == (3, 6, 6, 3)
    np.testing.assert_array_equal(clip[:, 0, 0, 0], [0, 60, 120])
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(folder / "frame_003.png")
    with pytest.raises(media.MediaError, match=r"clip: frames of different sizes"):
        media.read_clip(folder, 8)  # no size to bring them to
    (folder / "frame_004.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(media.MediaError, match=r"frame_004.png: not a readable image"):
        media.read_clip(folder, 8, size=6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(media.MediaError, match=r"empty: no frames") as e:
        media.read_clip(tmp_path / "empty", 8)
    assert e.value.kind == "empty"
