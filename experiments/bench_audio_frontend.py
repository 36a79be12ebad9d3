"""Seconds of audio per second: the jitted jnp log-mel frontend vs transformers' feature extractors, on CPU.

    python experiments/bench_audio_frontend.py [--repeats 15] [--json out.json]

Both presets (AST: 8 clips of 10 s, AST's 1024-frame window; Whisper: 4 clips of 30 s, its window) run in one
process, interleaved (ours, then theirs, each repeat), and the medians are reported. Whisper is timed twice on
the HF side: its default path (torch.stft, used whenever torch is installed) and its numpy path (what runs without
torch; AST's extractor always takes its numpy path when torchaudio is absent). Compilation is excluded (one warm-up
call each); our timing includes moving the numpy batch to the device and back. Inputs are uniform noise: the cost
does not depend on the content. Run it without the test suite's XLA flags: they skip optimisation passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from unittest import mock

import jax
import numpy as np

from mmjax.encoders import ast_features, whisper_features

SR = 16000
PRESETS = {"ast": (ast_features, 8, 10.0), "whisper": (whisper_features, 4, 30.0)}  # fn, clips, seconds per clip


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextlib.contextmanager
def _whisper_numpy_path():
    # WhisperFeatureExtractor.__call__ picks torch whenever importable; pretend it is not to time the numpy path
    with mock.patch("transformers.models.whisper.feature_extraction_whisper.is_torch_available", return_value=False):
        yield


def _contenders(name: str, fn, hf, waves: np.ndarray) -> dict:
    """label -> a call that turns the whole batch into features (and, for ours, back into host memory)."""

    def whisper_numpy_path():
        with _whisper_numpy_path():
            hf(list(waves), sampling_rate=SR, return_tensors="np")

    calls = {
        "mmjax (jit, jnp)": lambda: jax.device_get(fn(waves)),
        "transformers (default)": lambda: hf(list(waves), sampling_rate=SR, return_tensors="np"),
    }
    if name == "whisper":
        calls["transformers (numpy path)"] = whisper_numpy_path
    return calls


def run(repeats: int) -> list[dict]:
    import transformers

    extractors = {"ast": transformers.ASTFeatureExtractor(), "whisper": transformers.WhisperFeatureExtractor()}
    rng = np.random.default_rng(0)
    rows = []
    for name, (fn, clips, seconds) in PRESETS.items():
        waves = (0.5 * rng.uniform(-1, 1, (clips, int(seconds * SR)))).astype(np.float32)
        contenders = _contenders(name, fn, extractors[name], waves)
        for call in contenders.values():  # warm up: compilation, FFT plans, caches
            call()
        times = {label: [] for label in contenders}
        for _ in range(repeats):
            for label, call in contenders.items():
                times[label].append(_timed(call))
        audio_s = clips * seconds
        for label, ts in times.items():
            median = statistics.median(ts)
            rows.append(
                dict(
                    preset=name,
                    implementation=label,
                    clips=clips,
                    clip_s=seconds,
                    median_s=median,
                    audio_s_per_s=audio_s / median,
                    times_s=ts,
                )
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| preset | implementation | batch | median time (s) | min-max (s) | audio s / s | vs transformers (default) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {r["preset"]: r["median_s"] for r in rows if r["implementation"] == "transformers (default)"}
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['implementation']} | {r['clips']} x {r['clip_s']:.0f} s | {r['median_s']:.3f} "
            f"| {min(r['times_s']):.3f}-{max(r['times_s']):.3f} "
            f"| {r['audio_s_per_s']:.0f} | {base[r['preset']] / r['median_s']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.repeats)
    print(markdown(rows))
    env = dict(
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        jax=jax.__version__,
        wall_s=time.perf_counter() - start,
    )
    print(f"\nwall {env['wall_s']:.0f} s, load average {env['load_average']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(env=env, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
