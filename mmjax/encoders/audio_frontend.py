"""Log-mel frontend in pure jnp: waveforms [B, S] float32 -> (features [B, frames, mels], mask [B, frames]).

One general function, `log_mel(waveforms, config, lengths)`, driven by a frozen `LogMelConfig`, and two presets that
reproduce Hugging Face's feature extractors in float32:

- `AST_FBANK` / `ast_features`: `ASTFeatureExtractor` (Kaldi-style fbank as its numpy path computes it without
  torchaudio: 25 ms frames every 10 ms at 16 kHz, no centering, per-frame DC removal, pre-emphasis 0.97, a symmetric
  Hann window, |rfft(512)|^2, 128 Kaldi-mel filters triangular in mel space, natural log floored at float32 eps,
  padded or truncated to 1024 frames, then (x - mean) / (2 std) with AudioSet statistics).
- `WHISPER_LOG_MEL` / `whisper_features`: `WhisperFeatureExtractor` (the waveform zero-padded or truncated to 30 s, a
  centred reflect-padded STFT with a periodic Hann window of 400 every 160, the last frame dropped, 80 Slaney-mel
  filters, log10 floored at 1e-10, clamped to (max - 8) per example, then (x + 4) / 4).

Hugging Face returns Whisper features as [B, mels, frames]; we follow the repository's [B, frames, mels] convention.
The mask marks frames computed from real samples (1) versus padding (0), the way HF's `attention_mask` does.
Neither preset dithers (HF's default for both extractors is dither 0), so the features are deterministic.
Filter banks and windows are built once in numpy float64 at trace time (constants), because the reference builds
them in float64 too; everything that touches the signal runs in float32 under `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LogMelConfig:
    """Everything that defines a log-mel frontend; hashable so it can be a static jit argument.

    Signal: `sample_rate` Hz; frames of `frame_length` samples every `hop_length`, zero-padded to `fft_length`.
    `center` reflect-pads frame_length // 2 on both sides (librosa/torch.stft style) instead of starting at 0.
    `pad_samples`: pad or truncate every waveform to this many samples before framing (Whisper's 30 s window).
    `drop_last_frame`: Whisper drops the STFT's final frame. `window`: 'hann' (symmetric), 'hann_periodic',
    'povey' (Kaldi: symmetric Hann ** 0.85) or 'hamming'. `remove_dc_offset` and `preemphasis` act per frame.
    Mel: `mel_bins` filters over [f_min, f_max] on `mel_scale` ('kaldi', 'htk', 'slaney'), triangular in mel space
    when `mel_triangles_in_mel` (torchaudio/Kaldi) else in Hz; `mel_norm='slaney'` scales to constant area.
    Log: max(mel, `mel_floor`) then `log` ('log' or 'log10'); `dynamic_range` clamps to (max - range) per example.
    Output: `num_frames` pads or truncates frames (padded frames hold `pad_value` before normalisation), then
    (x - `norm_mean`) / `norm_scale`.
    """

    sample_rate: int = 16000
    frame_length: int = 400
    hop_length: int = 160
    fft_length: int = 400
    window: str = "hann_periodic"
    center: bool = True
    pad_samples: int | None = None
    drop_last_frame: bool = False
    remove_dc_offset: bool = False
    preemphasis: float = 0.0
    mel_bins: int = 80
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    mel_triangles_in_mel: bool = False
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_floor: float = 1e-10
    log: str = "log10"
    dynamic_range: float | None = None
    num_frames: int | None = None
    pad_value: float = 0.0
    norm_mean: float = 0.0
    norm_scale: float = 1.0


AST_FBANK = LogMelConfig(
    fft_length=512,
    window="hann",  # HF asks torchaudio for window_type="hanning"; its numpy twin uses np.hanning(400)
    center=False,
    remove_dc_offset=True,
    preemphasis=0.97,
    mel_bins=128,
    mel_scale="kaldi",
    mel_norm=None,
    mel_triangles_in_mel=True,
    f_min=20.0,
    mel_floor=float(np.finfo(np.float32).eps),
    log="log",
    num_frames=1024,
    norm_mean=-4.2677393,
    norm_scale=2 * 4.5689974,  # HF AST divides by twice the AudioSet std, not by the std
)

WHISPER_LOG_MEL = LogMelConfig(
    pad_samples=30 * 16000,
    drop_last_frame=True,
    dynamic_range=8.0,
    norm_mean=-4.0,
    norm_scale=4.0,
)


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    if scale == "kaldi":
        return 1127.0 * np.log1p(hz / 700.0)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    if scale == "slaney":  # linear below 1 kHz, logarithmic above (Slaney's Auditory Toolbox)
        log_step = 27.0 / np.log(6.4)
        return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * log_step, 3.0 * hz / 200.0)
    raise ValueError(f"unknown mel_scale {scale!r}; use 'kaldi', 'htk' or 'slaney'")


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    if scale == "kaldi":
        return 700.0 * np.expm1(mel / 1127.0)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        log_step = np.log(6.4) / 27.0
        return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), 200.0 * mel / 3.0)
    raise ValueError(f"unknown mel_scale {scale!r}; use 'kaldi', 'htk' or 'slaney'")


@functools.lru_cache(maxsize=16)
def mel_filters(config: LogMelConfig) -> np.ndarray:
    """Triangular mel filter bank [fft_length // 2 + 1, mel_bins] float64 (numpy; a constant under jit)."""
    n_freqs = config.fft_length // 2 + 1
    lo, hi = _hz_to_mel(config.f_min, config.mel_scale), _hz_to_mel(config.f_max, config.mel_scale)
    edges_mel = np.linspace(lo, hi, config.mel_bins + 2)  # band edges: filter m spans edges m .. m + 2
    edges_hz = _mel_to_hz(edges_mel, config.mel_scale)
    if config.mel_triangles_in_mel:
        # Kaldi draws triangles on the mel axis, with bins at multiples of sample_rate / fft_length
        bins = _hz_to_mel(np.arange(n_freqs) * config.sample_rate / config.fft_length, config.mel_scale)
        edges = edges_mel
    else:
        bins = np.linspace(0.0, config.sample_rate // 2, n_freqs)
        edges = edges_hz
    rise = (bins[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    fall = (edges[None, 2:] - bins[:, None]) / np.diff(edges)[None, 1:]
    filters = np.maximum(0.0, np.minimum(rise, fall))
    if config.mel_norm == "slaney":  # equal area per band: approximately constant energy per channel
        filters = filters * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[None, :]
    elif config.mel_norm is not None:
        raise ValueError(f"unknown mel_norm {config.mel_norm!r}; use None or 'slaney'")
    filters.setflags(write=False)  # cached and shared between callers
    return filters


def window(config: LogMelConfig) -> np.ndarray:
    """The analysis window [frame_length] float64."""
    n = config.frame_length
    symmetric_hann = np.hanning(n)
    if config.window == "hann":
        return symmetric_hann
    if config.window == "hann_periodic":  # the first n points of an (n + 1)-point symmetric window
        return np.hanning(n + 1)[:-1]
    if config.window == "povey":
        return symmetric_hann**0.85
    if config.window == "hamming":
        return np.hamming(n)
    raise ValueError(f"unknown window {config.window!r}; use 'hann', 'hann_periodic', 'povey' or 'hamming'")


def frame_count(num_samples, config: LogMelConfig):
    """Frames computed from `num_samples` real samples (int or int array), before padding to `num_frames`.

    This is the mask's length: HF AST computes 1 + floor((n - frame) / hop) frames (none for n < frame); Whisper's
    mask keeps frame i while sample i * hop is real, ceil(n / hop) frames.
    """
    if config.pad_samples is not None:
        num_samples = jnp.minimum(num_samples, config.pad_samples)
    if config.center:
        n = -(-num_samples // config.hop_length)
    else:
        n = jnp.where(
            num_samples >= config.frame_length, 1 + (num_samples - config.frame_length) // config.hop_length, 0
        )
    return n if config.num_frames is None else jnp.minimum(n, config.num_frames)


def _total_frames(num_samples: int, config: LogMelConfig) -> int:
    """Frames the STFT produces over a (padded) buffer of `num_samples`, before `num_frames` pads or truncates."""
    if config.center:
        n = 1 + num_samples // config.hop_length
    else:
        n = max(0, 1 + (num_samples - config.frame_length) // config.hop_length)
    return n - int(config.drop_last_frame)


@functools.partial(jax.jit, static_argnames="config")
def log_mel(waveforms: jax.Array, config: LogMelConfig, lengths: jax.Array | None = None):
    """Log-mel features of a batch of waveforms.

    waveforms: [B, S] float32 (mono, at `config.sample_rate`); samples at or past `lengths[b]` are ignored.
    lengths: optional [B] int true lengths in samples (default: all S).
    Returns (features [B, F, mel_bins] float32, mask [B, F] int32), F = `config.num_frames` when set, else the
    number of frames S yields. Masked frames hold what the reference puts there (its padding), not garbage.
    """
    x = jnp.asarray(waveforms, jnp.float32)
    batch, num_samples = x.shape
    lengths = num_samples if lengths is None else jnp.minimum(jnp.asarray(lengths, jnp.int32), num_samples)
    lengths = jnp.broadcast_to(jnp.asarray(lengths, jnp.int32), (batch,))
    # Zero everything past each true length: the reference sees each waveform alone, padded with zeros if at all.
    x = jnp.where(jnp.arange(num_samples)[None, :] < lengths[:, None], x, 0.0)
    if config.pad_samples is not None:
        x = _fit(x, config.pad_samples, axis=1)
        num_samples = config.pad_samples
    frames_out = _total_frames(num_samples, config)
    if config.num_frames is not None and not config.center:
        # Without centering, frame t only reads samples below t * hop + frame: skip samples no kept frame reads.
        needed = (config.num_frames - 1) * config.hop_length + config.frame_length
        x, num_samples = x[:, :needed], min(num_samples, needed)
        frames_out = _total_frames(num_samples, config)
    if config.center:
        half = config.frame_length // 2
        x = jnp.pad(x, ((0, 0), (half, half)), mode="reflect")
    n_computed = frames_out + int(config.drop_last_frame)
    if n_computed > 0:
        feats = _log_mel_frames(x, n_computed, config)[:, :frames_out]
    else:  # shorter than one frame: nothing to transform
        feats = jnp.zeros((batch, 0, config.mel_bins), jnp.float32)
    n_valid = frame_count(lengths, config)
    if config.dynamic_range is not None:
        # Whisper clamps against the loudest value of all frames it computed, padding included
        feats = jnp.maximum(feats, feats.max(axis=(1, 2), keepdims=True) - config.dynamic_range)
    if config.num_frames is not None:
        feats = _fit(feats, config.num_frames, axis=1)
    mask = (jnp.arange(feats.shape[1])[None, :] < n_valid[:, None]).astype(jnp.int32)
    if not config.center:
        # Frames past the true length were computed from zeroed samples; the reference never computes them at all
        # and pads with pad_value instead (for centred frames the reference also frames its zero padding).
        feats = jnp.where(mask[:, :, None] > 0, feats, config.pad_value)
    return (feats - config.norm_mean) / config.norm_scale, mask


def _fit(x: jax.Array, size: int, axis: int) -> jax.Array:
    """Truncate or zero-pad `x` to `size` along `axis`."""
    if x.shape[axis] >= size:
        return jax.lax.slice_in_dim(x, 0, size, axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pad)


def _log_mel_frames(x: jax.Array, n_frames: int, config: LogMelConfig) -> jax.Array:
    """[B, S] -> [B, n_frames, mel_bins]: frame, condition, window, power spectrum, mel, floor, log."""
    starts = np.arange(n_frames) * config.hop_length
    frames = x[:, starts[:, None] + np.arange(config.frame_length)[None, :]]  # [B, T, frame_length] gather
    if config.remove_dc_offset:
        frames = frames - frames.mean(axis=-1, keepdims=True)
    if config.preemphasis:
        # y[0] = (1 - a) x[0], y[n] = x[n] - a x[n-1]: Kaldi's choice for the frame's first sample
        previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
        frames = frames - config.preemphasis * previous
    frames = frames * jnp.asarray(window(config), jnp.float32)
    spectrum = jnp.fft.rfft(frames, n=config.fft_length, axis=-1)
    power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
    filters = jnp.asarray(mel_filters(config), jnp.float32)
    mel = jnp.einsum("btf,fm->btm", power, filters, precision=jax.lax.Precision.HIGHEST)
    mel = jnp.maximum(mel, config.mel_floor)
    if config.log == "log":
        return jnp.log(mel)
    if config.log == "log10":
        return jnp.log10(mel)
    raise ValueError(f"unknown log {config.log!r}; use 'log' or 'log10'")


def ast_features(waveforms: jax.Array, lengths: jax.Array | None = None):
    """`ASTFeatureExtractor` in jnp: [B, S] 16 kHz waveforms -> ([B, 1024, 128] features, [B, 1024] mask)."""
    return log_mel(waveforms, AST_FBANK, lengths)


def whisper_features(waveforms: jax.Array, lengths: jax.Array | None = None):
    """`WhisperFeatureExtractor` in jnp: [B, S] 16 kHz waveforms -> ([B, 3000, 80] features, [B, 3000] mask)."""
    return log_mel(waveforms, WHISPER_LOG_MEL, lengths)


# The presets a tower's `frontend` field names: with one set, the tower takes waveforms and computes its own
# spectrograms inside the model step (on the accelerator), so the data pipeline carries raw audio only.
PRESETS = {"ast": AST_FBANK, "whisper": WHISPER_LOG_MEL}


def tower_spectrograms(inputs, lengths, frontend: str | None, mel_bins: int, **overrides):
    """What an audio tower's `__call__` starts with: spectrograms [B, T, mel_bins].

    frontend None: `inputs` already are spectrograms (Hugging Face's layout after its feature extractor).
    Otherwise `inputs` are waveforms [B, S] (or a pair (waveforms, lengths), how the trainer passes audio through
    a model's visual slot) turned into features by preset `frontend` at `mel_bins` bins, with the tower's own
    `overrides` of the preset's fields (e.g. AST's frame count)."""
    if frontend is None:
        return inputs
    if frontend not in PRESETS:
        raise ValueError(f"frontend: expected one of {sorted(PRESETS)} or None, got {frontend!r}")
    if isinstance(inputs, tuple | list):
        inputs, lengths = inputs
    if inputs.ndim != 2:
        raise ValueError(f"a tower with frontend={frontend!r} takes waveforms [B, samples], got {tuple(inputs.shape)}")
    config = dataclasses.replace(PRESETS[frontend], mel_bins=mel_bins, **overrides)
    return log_mel(inputs, config, lengths)[0]
