"""Reading users' audio and video files: soundfile (libsndfile bundled) for audio, PyAV (FFmpeg bundled) for video.

Both return arrays in the form the models take (float32 mono waveforms at the model's rate; uint8 frames
[T, H, W, 3]) and raise `MediaError` naming the file and what is wrong with it (unreadable, empty, too short, no
such stream): the error the JSONL source (`mmjax.data.jsonl`) turns into a bad record. `read_clip` reads a whole
clip (a video file, or a folder of frame images) for storing, `read_clip_and_soundtrack` the clip with the audio
of the same file over the same span; `read_video` samples a clip for a model.
"""

from __future__ import annotations

import math
import os

import numpy as np


class MediaError(ValueError):
    """A media file that cannot give what was asked of it; the message names the file. `kind` says how, for
    counting: "corrupt" (unreadable, or no such stream), "empty" or "too short"."""

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


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
        raise MediaError(f"{path}: the audio is empty", "empty")
    audio = resample(audio.mean(axis=1), file_rate, rate)
    if audio.size < min_seconds * rate:
        raise MediaError(f"{path}: {audio.size / rate:.2f} s of audio, expected at least {min_seconds} s", "too short")
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


def _decoded_frames(path: str):
    """(uint8 [H, W, 3], time in seconds or None) of each frame of the file's first video stream, one at a time (a
    clip can be far larger than memory at its full resolution)."""
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24"), frame.time
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None


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
    frames = [frame for frame, _ in _decoded_frames(path)]
    try:
        picked = frame_indices(len(frames), num_frames, stride=stride, rng=rng)
    except ValueError as e:
        raise MediaError(f"{path}: {e}", "too short") from None
    clip = np.stack([frames[i] for i in picked])
    if size is not None and clip.shape[1:3] != (size, size):
        from PIL import Image

        clip = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in clip])
    return clip


def read_clip(path: str, max_frames: int, *, size: int | None = None, min_frames: int = 1) -> np.ndarray:
    """A whole clip as uint8 [T, H, W, 3], T <= `max_frames`: every frame of the video file `path`, or of the folder
    `path` of frame images (read in sorted name order; hidden files such as .DS_Store are not frames), spread
    uniformly over the clip when there are more than `max_frames`. With `size`, each frame becomes its largest
    centred square resized to size x size (what the image pipeline does to a still image in evaluation).

    Raises `MediaError` for a file that does not decode (for a folder: naming the frame), no frames ("empty"), or
    fewer than `min_frames` ("too short")."""
    if min_frames > max_frames:
        raise ValueError(f"min_frames ({min_frames}) > max_frames ({max_frames}): no clip could be read")
    if os.path.isdir(path):
        return _read_frame_folder(path, max_frames, size, min_frames)
    return _read_video_file(path, max_frames, size, min_frames)[0]


def read_clip_and_soundtrack(
    path: str, max_frames: int, rate: int = 16_000, *, size: int | None = None, min_frames: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """`read_clip`'s clip of the video file `path` and the file's audio over the time the clip shows, float32 mono
    [round(seconds x rate)] at `rate` Hz: from the first frame's time to the end of the last frame (its time plus
    one frame). The stored frames are spread over the whole clip, so the whole soundtrack is what they show.

    Raises `MediaError` as `read_clip` does, and for a file with no audio stream ("no audio") or whose audio
    stops more than one frame before the clip does ("too short"; the last frame's sound is zero-padded)."""
    if min_frames > max_frames:
        raise ValueError(f"min_frames ({min_frames}) > max_frames ({max_frames}): no clip could be read")
    if os.path.isdir(path):
        raise MediaError(f"{path}: a folder of frames has no audio track", "no audio")
    clip, (first, last, frame_seconds) = _read_video_file(path, max_frames, size, min_frames)
    sound, sound_start = _decoded_audio(path, rate)
    begin = round((first - sound_start) * rate)  # the audio may start a little after or before the first frame
    wanted = round((last + frame_seconds - first) * rate)
    if begin < 0:
        sound, begin = np.concatenate([np.zeros(-begin, np.float32), sound]), 0
    kept = sound[begin : begin + wanted]
    if kept.size < wanted - frame_seconds * rate:
        raise MediaError(
            f"{path}: {kept.size / rate:.2f} s of audio over the {wanted / rate:.2f} s the video shows", "too short"
        )
    return clip, np.pad(kept, (0, wanted - kept.size))


def _read_video_file(path: str, max_frames: int, size: int | None, min_frames: int):
    """(clip, (first frame's time, last frame's time, one frame's duration)) of the video file `path`."""
    kept, stride, total, times = [], 1, 0, []
    for frame, time in _decoded_frames(path):
        # The frame count is only known at the end, so keep every `stride`-th frame and double the stride when
        # 2 x max_frames are held: memory stays bounded for any length, and the kept frames stay evenly spaced.
        if total % stride == 0:
            kept.append(_square(frame, size))
            if len(kept) == 2 * max_frames:
                kept, stride = kept[::2], stride * 2
        times = [times[0] if times else time, time]  # first and last
        total += 1
    _check_length(path, total, min_frames)
    clip = _stacked(path, [kept[i] for i in frame_indices(len(kept), min(len(kept), max_frames))])
    first, last = (t if t is not None else 0.0 for t in times)
    # frames a constant time apart (a variable-rate file: on average); one frame alone lasts until the next
    step = (last - first) / (total - 1) if total > 1 else _frame_seconds(path)
    return clip, (first, last, step)


def _frame_seconds(path: str) -> float:
    import av

    with av.open(os.fspath(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(1 / rate) if rate else 0.0


def _decoded_audio(path: str, rate: int) -> tuple[np.ndarray, float]:
    """(float32 mono [samples] at `rate`, the time of its first sample) of the file's first audio stream."""
    import av

    chunks, start = [], None
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio track", "no audio")
            # libswresample mixes the channels down and converts the rate, as a player would
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                if start is None:
                    start = frame.time or 0.0
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"{path}: not a readable audio track ({type(e).__name__}: {e})") from None
    if not chunks:
        raise MediaError(f"{path}: the audio track is empty", "empty")
    return np.concatenate(chunks).astype(np.float32, copy=False), start


def _read_frame_folder(path: str, max_frames: int, size: int | None, min_frames: int) -> np.ndarray:
    from PIL import Image

    names = sorted(n for n in os.listdir(path) if not n.startswith(".") and os.path.isfile(os.path.join(path, n)))
    _check_length(path, len(names), min_frames)
    frames = []
    for i in frame_indices(len(names), min(len(names), max_frames)):  # only the frames kept are decoded
        file = os.path.join(path, names[i])
        try:
            with Image.open(file) as img:
                frames.append(_square(np.asarray(img.convert("RGB")), size))
        except Exception as e:  # Pillow raises many types for bad files; all mean the same here
            raise MediaError(f"{file}: not a readable image ({type(e).__name__}: {e})") from None
    return _stacked(path, frames)


def _check_length(path: str, total: int, min_frames: int) -> None:
    if total == 0:
        raise MediaError(f"{path}: no frames", "empty")
    if total < min_frames:
        raise MediaError(f"{path}: {total} frames, expected at least {min_frames}", "too short")


def _square(frame: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return frame
    from mmjax.data.preprocess import center_box, crop_and_resize

    return crop_and_resize(frame, center_box(*frame.shape[:2]), size)


def _stacked(path: str, frames: list[np.ndarray]) -> np.ndarray:
    if len({f.shape for f in frames}) > 1:
        shapes = sorted({f.shape[:2] for f in frames})
        raise MediaError(f"{path}: frames of different sizes {shapes[:3]} (give a size to resize them to)")
    return np.stack(frames)


def write_video(
    path: str, frames: np.ndarray, fps: int = 8, *, audio: np.ndarray | None = None, sample_rate: int = 16_000
) -> None:
    """uint8 [T, H, W, 3] frames to an H.264 mp4, with `audio` (float32 mono) as its AAC soundtrack (tests and
    examples make their clips with it)."""
    import av

    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
        if sound is not None:
            size = sound.frame_size or 1024
            wave = np.asarray(audio, np.float32)
            for i in range(0, wave.size, size):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, i : i + size]), "flt", "mono")
                chunk.sample_rate, chunk.pts = sample_rate, i
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())
