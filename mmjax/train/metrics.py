"""Where training numbers go: workdir/metrics.jsonl, TensorBoard event files, and a progress line on process 0."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import sys
import tempfile
import time

import jax
from etils import epath

logger = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per device, from the vendors' spec sheets; MFU is reported only where known.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
    kind = (device or jax.devices()[0]).device_kind
    for name, peak in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
        if kind.startswith(name):
            return peak
    return None


def xla_cost_flops(compiled) -> float | None:
    """FLOPs of one call from XLA's cost model: of a compiled executable (per device, after SPMD partitioning and
    XLA's optimizations) or of a `Lowered` computation (the program as jax wrote it, no compile needed)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends have no cost model
        return None
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


class MetricWriter:
    """Append one JSON object per logged step to metrics.jsonl and mirror scalars to TensorBoard (process 0)."""

    def __init__(self, workdir: str | epath.Path, *, enabled: bool = True):
        self.enabled = enabled
        self.path = epath.Path(workdir) / "metrics.jsonl"
        # Object stores (gs://) cannot append: there the file is rewritten whole from the lines kept here.
        self._remote = "://" in str(self.path)
        self._lines = self.path.read_text().splitlines() if self._remote and enabled and self.path.exists() else []
        self._tb = None
        if enabled:  # only process 0 writes events
            self._tb = _summary_writer_class()(_tensorboard_dir(epath.Path(workdir)))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        line = json.dumps(record)
        if self._remote:
            self._lines.append(line)
            self.path.write_text("\n".join(self._lines) + "\n")
        else:
            with self.path.open("a") as f:
                f.write(line + "\n")
        for k, v in metrics.items():
            self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _summary_writer_class():
    """tensorboardX.SummaryWriter, imported without torch.

    tensorboardX imports torch at module level whenever it is installed (it is, beside mmjax, wherever the
    Hugging Face oracle is), which costs ~4 s per run; scalars never need it, so the import is hidden from it.
    """
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _tensorboard_dir(workdir: epath.Path) -> str:
    """workdir/tensorboard; for gs:// tensorboardX needs google-cloud-storage, else events stay on this host."""
    target = str(workdir / "tensorboard")
    if target.startswith("gs://") and importlib.util.find_spec("google.cloud.storage") is None:
        local = os.path.join(tempfile.gettempdir(), "mmjax_tensorboard", target[len("gs://") :].replace("/", "_"))
        logger.warning(
            "TensorBoard events go to %s: writing to %s needs `pip install google-cloud-storage`", local, target
        )
        return local
    return target


@contextlib.contextmanager
def log_file(workdir: epath.Path):
    """Everything logged during a run (INFO and up, every library) also goes to workdir/train.log (process 0;
    others to train.<process>.log). Local workdirs only: an object store cannot be appended to."""
    if "://" in str(workdir):
        yield
        return
    name = "train.log" if jax.process_index() == 0 else f"train.{jax.process_index()}.log"
    handler = logging.FileHandler(os.fspath(workdir / name))
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(min(level, logging.INFO) if level != logging.NOTSET else logging.INFO)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()


class Progress:
    """A single refreshed line: step, loss, steps/s and ETA. Written to stderr on process 0 only."""

    def __init__(self, total: int, start: int, *, enabled: bool = True):
        self.total, self.start, self.enabled = total, start, enabled
        self.t0 = time.perf_counter()
        self.shown = False

    def update(self, step: int, loss: float | None = None) -> None:
        if not self.enabled:
            return
        done = step - self.start
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        loss_text = f" loss {loss:.4f}" if loss is not None else ""
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
        sys.stderr.write(f"\rstep {step}/{self.total}{loss_text} | {rate:.2f} steps/s | ETA {eta_text}   ")
        sys.stderr.flush()
        self.shown = True

    def pause(self) -> None:
        """End the progress line so a log line can follow; the next update starts a new one."""
        if self.enabled and self.shown:
            sys.stderr.write("\n")
            self.shown = False

    def close(self) -> None:
        self.pause()
