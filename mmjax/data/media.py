"""Reading users' audio and video files: soundfile (libsndfile bundled) for audio, PyAV (FFmpeg bundled) for video.

Both return arrays in the form the models take (float32 mono waveforms at the model's rate; uint8 frames
[T, H, W, 3]) and raise `MediaError` naming the file and what is wrong with it (unreadable, empty, too short, no
such stream): the error a JSONL source reading such files is to turn into a bad record (not wired yet).
"""

from __future__ import annotations

import math
import os

import numpy as np


class MediaError(ValueError):
    """A media file that cannot give what was asked of it; the message names the file."""


def resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    """float32 [samples] from `rate` to `to` Hz (polyphase, with its anti-aliasing filter)."""
    if rate == to:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # scipy comes with jax

    g = math.gcd(rate, to)
    return resample_poly(audio, to // g, rate // g).astype(np.float32)


def read_audio(path: str, rate: int = 16_000, *, min_seconds: float = 0.0) -> np.ndarray:
    """The file's audio as float32 mono [samples] in [-1, 1] at `rate` Hz (channels averaged, resampled)."""
    import soundfile

    try:
        audio, file_rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise MediaError(f"{path}: not a readable audio file ({e})") from None
    if audio.size == 0:
        raise MediaError(f"{path}: the audio is empty")
    audio = resample(audio.mean(axis=1), file_rate, rate)
    if audio.size < min_seconds * rate:
        raise MediaError(f"{path}: {audio.size / rate:.2f} s of audio, expected at least {min_seconds} s")
    return audio


def frame_indices(
    total: int, num_frames: int, *, stride: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Which of a clip's `total` frames to take: `num_frames` spread uniformly over the clip, or with `rng` (training)
    a random segment of `num_frames` frames `stride` apart (random temporal jittering, as video models train)."""
    span = (num_frames - 1) * stride + 1
    if total < num_frames:
        raise ValueError(f"{total} frames, expected at least {num_frames}")
    if rng is None:
        return np.linspace(0, total - 1, num_frames).round().astype(np.int64)
    if total < span:  # too short for the stride: uniform over what there is
        return np.linspace(0, total - 1, num_frames).round().astype(np.int64)
    start = int(rng.integers(0, total - span + 1))
    return start + stride * np.arange(num_frames)


def read_video(
    path: str,
    num_frames: int,
    *,
    size: int | None = None,
    stride: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """`num_frames` frames of the file's video stream as uint8 [T, H, W, 3] (`size`: resized to size x size),
    sampled by `frame_indices` (uniformly, or a random segment with `rng`)."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
    try:
        picked = frame_indices(len(frames), num_frames, stride=stride, rng=rng)
    except ValueError as e:
        raise MediaError(f"{path}: {e}") from None
    clip = np.stack([frames[i] for i in picked])
    if size is not None and clip.shape[1:3] != (size, size):
        from PIL import Image

        clip = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in clip])
    return clip


def write_video(path: str, frames: np.ndarray, fps: int = 8) -> None:
    """uint8 [T, H, W, 3] frames to an H.264 mp4 (tests and examples make their clips with it)."""
    import av

    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
