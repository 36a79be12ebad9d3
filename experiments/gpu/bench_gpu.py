"""The GPU run of `experiments/gpu/run.sh`: every figure of the accelerator benchmark into one JSON.

    python experiments/gpu/bench_gpu.py --out runs/gpu [--budget_s 450]

Sections, most important first, each in its own process (a crash or an out-of-memory in one loses only that one)
with its share of the time budget; the JSON is rewritten after each, so a run cut short still reports what it
measured:
  env        the GPU, driver, versions, and the bf16 matmul rate this GPU reaches (the MFU ceiling actually seen)
  b16        CLIP ViT-B/16 at 224 px (`configs/clip_shapes.py:b16`: bf16 compute, float32 master weights): the step
             at batch 256, then at the largest batch XLA's memory plan says fits; step time, images/s, MFU, memory
  torch      `experiments/bench_vs_torch.py` at B/16 sizes: mmjax against transformers' CLIPModel on this GPU
             (eager, then torch.compile when time is left), bf16 autocast and SDPA attention on the PyTorch side
  attention  cuDNN's fused attention against XLA's: outputs and time, alone and inside a ViT-B/16
  demo       the demo config (`configs/clip_shapes.py`): `mmjax bench`, then `mmjax train` to the end
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
# seconds each section may take at most; the run stops starting sections once the budget is spent
SECTIONS = {"env": 20, "b16": 200, "torch": 170, "attention": 30, "demo": 60}
B16 = "configs/clip_shapes.py:b16"
# MMJAX_GPU_SMOKE=1: every section at toy sizes, to check the script itself on a CPU before spending GPU time
SMOKE = os.environ.get("MMJAX_GPU_SMOKE") == "1"
if SMOKE:
    B16 = "configs/clip_shapes.py:tiny"
PARTIAL: pathlib.Path | None = None  # a section's JSON, rewritten as it goes, so a timeout keeps what it measured


def save(result: dict) -> dict:
    if PARTIAL is not None:
        PARTIAL.write_text(json.dumps(result, indent=2, default=str))
    return result


def section_env() -> dict:
    import jax
    import jax.numpy as jnp

    out = {"jax": jax.__version__, "devices": [d.device_kind for d in jax.devices()], "backend": jax.default_backend()}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except FileNotFoundError:
        out["nvidia_smi"] = "not installed"
    try:
        import torch
        import transformers

        out["torch"], out["transformers"] = torch.__version__, transformers.__version__
    except ImportError as e:
        out["torch"] = f"missing: {e}"
    n = 512 if SMOKE else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, b))
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        c = matmul(a, b)
    jax.block_until_ready(c)
    out["bf16_matmul_8192_tflops"] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
    return out


def _b16_bench(batch: int, steps: int, attention: str | None) -> dict:
    from mmjax.config import load_config
    from mmjax.train.bench import bench

    # the step runs on placeholder batches: the dataset Setup opens (for its sizes) can be a small one, which spares
    # generating 10,000 scenes before the first measurement (the 2026-11-30 run spent its budget there)
    small = ["num_train=64", "num_validation=16", "num_test=16", "num_compositional=16"]
    overrides = [f"batch_size={batch}", *(f"data.shapes.{s}" for s in small)]
    if attention:
        overrides += [f"model.image.attention_impl={attention}", f"model.text.attention_impl={attention}"]
    return bench(load_config(B16, overrides), steps=steps, warmup=2)


def section_b16() -> dict:
    import jax

    probe_batch = 16 if SMOKE else 256
    out = {"config": B16}
    attention = None  # mmjax's choice: cuDNN where it applies
    try:
        out["probe"] = _b16_bench(probe_batch, 10, attention)
    except Exception as e:  # the fused kernel refused: measure XLA's attention rather than nothing
        out["auto_attention_error"] = str(e).splitlines()[-1][:500]
        attention = "xla"
        out["probe"] = _b16_bench(probe_batch, 10, attention)
    out["attention_impl"] = attention or "auto"
    save(out)
    limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
    if SMOKE and not limit:  # a CPU reports no limit: a pretend one walks the largest-batch path before a GPU does
        limit = 512 * 2**20
    probe = out["probe"]
    out["bytes_limit"] = limit
    if not (limit and probe.get("xla_temp_bytes")):
        return out
    # temp memory grows with the batch; arguments (params, optimizer state, the batch) barely do
    per_example = probe["xla_temp_bytes"] / probe_batch
    fits = int((0.9 * limit - probe["xla_argument_bytes"]) / per_example) // 128 * 128
    out["planned_batch"] = fits
    for batch in sorted({b for b in (fits, fits * 3 // 4 // 128 * 128) if b > 0}, reverse=True):
        try:
            out["largest"] = _b16_bench(batch, 10, attention)
            break
        except Exception as e:  # out of memory: XLA's plan missed a buffer; one step down
            out.setdefault("failed", []).append({"batch": batch, "error": str(e).splitlines()[0][:300]})
    return out


def section_torch(budget: float) -> dict:
    """mmjax vs PyTorch eager first (the ratio the issue asks for), then with torch.compile if time is left."""
    sizes = [
        "--vision_width=768",
        "--vision_depth=12",
        "--patch=16",
        "--text_width=512",
        "--text_depth=12",
        "--embed_dim=512",
        "--batch=256",
    ]
    if SMOKE:
        sizes = ["--vision_width=64", "--vision_depth=1", "--text_width=64", "--text_depth=1", "--batch=4"]
    device = "cpu" if SMOKE else "cuda"
    common = [*sizes, f"--device={device}", "--bf16", "--steps=5", "--warmup=2", "--repeats=3", "--sizes="]
    out = {}
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45"}  # PyTorch shares the GPU in this process
    started = time.time()
    for name, extra in (("eager", ["--no_compile"]), ("compile", []), ("eager_xla_attention", ["--no_compile"])):
        if name == "eager_xla_attention":
            if "error" not in out["eager"]:
                continue
            extra = [*extra, "--attention_impl=xla"]
        left = budget - (time.time() - started)
        if left < 40:
            out[name] = {"skipped": f"{left:.0f} s left"}
            continue
        path = f"/tmp/bench_vs_torch_{name}.json"
        cmd = [sys.executable, str(ROOT / "experiments/bench_vs_torch.py"), *common, *extra, f"--json={path}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env, cwd=ROOT)
            out[name] = (
                json.loads(pathlib.Path(path).read_text()) if proc.returncode == 0 else {"error": proc.stderr[-2000:]}
            )
            out[name + "_table"] = proc.stdout[-2000:]
            save(out)
        except subprocess.TimeoutExpired:
            out[name] = {"error": f"timed out after {left:.0f} s"}
    return out


def section_attention() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mmjax.encoders import ViT

    out = {}
    shape = (2, 17, 2, 64) if SMOKE else (256, 197, 12, 64)  # ViT-B/16's attention at batch 256
    q, k, v = (jax.random.normal(jax.random.key(i), shape, jnp.bfloat16) for i in range(3))
    results = {}
    for label, impl in (("xla", "xla"), ("cudnn", "xla" if SMOKE else "cudnn")):
        if label == "cudnn":
            try:

                def probe(q, k, v, impl=impl):  # the training kernels are the ones that check lengths
                    return jax.nn.dot_product_attention(q, k, v, implementation=impl).astype(jnp.float32).sum()

                jax.jit(jax.grad(probe)).lower(q, k, v)
            except Exception as e:  # odd lengths: cuDNN refuses them outright; mmjax pads (below)
                out["cudnn_unpadded_error"] = str(e).splitlines()[-1][:300]
                from mmjax.layers.attention import fused_attention

                def attention(q, k, v):
                    return fused_attention(q, k, v, None)

            else:

                def attention(q, k, v, impl=impl):
                    return jax.nn.dot_product_attention(q, k, v, implementation=impl)

        else:

            def attention(q, k, v, impl=impl):
                return jax.nn.dot_product_attention(q, k, v, implementation=impl)

        def loss(q, k, v, attention=attention):
            return attention(q, k, v).astype(jnp.float32).sum()

        fwd = jax.jit(attention)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        results[label] = np.asarray(fwd(q, k, v), np.float32)
        jax.block_until_ready(grad(q, k, v))
        t0 = time.perf_counter()
        for _ in range(20):
            g = grad(q, k, v)
        jax.block_until_ready(g)
        out[f"{label}_fwd_bwd_ms"] = 1000 * (time.perf_counter() - t0) / 20
    out["max_abs_diff"] = float(np.abs(results["xla"] - results["cudnn"]).max())
    out["max_abs"] = float(np.abs(results["xla"]).max())
    size = 32 if SMOKE else 224
    images = jax.random.normal(jax.random.key(3), (8, size, size, 3))
    pooled = {}
    for impl in ("xla", None):  # None: mmjax picks cuDNN here
        vit = ViT.from_variant("Ti/16" if SMOKE else "B/16", image_size=size, attention_impl=impl, dtype=jnp.bfloat16)
        variables = vit.init(jax.random.key(0), images)
        try:
            pooled[str(impl)] = np.asarray(vit.apply(variables, images).pooled, np.float32)
        except Exception as e:
            out["vit_b16_error"] = str(e).splitlines()[-1][:300]
            return out
    diff = np.abs(pooled["xla"] - pooled["None"])
    out["vit_b16_pooled_max_abs_diff"] = float(diff.max())
    out["vit_b16_pooled_rel_diff"] = float(diff.max() / np.abs(pooled["xla"]).max())
    return out


def section_demo(budget: float) -> dict:
    out = {}
    start = time.time()
    demo = "configs/clip_shapes.py:tiny" if SMOKE else "configs/clip_shapes.py"
    mmjax = [sys.executable, "-m", "mmjax"]
    proc = subprocess.run(
        [*mmjax, "bench", "--config", demo, "--steps", "50"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=min(60, budget / 2),
    )
    out["bench"] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-1500:]}
    save(out)
    workdir = pathlib.Path("/tmp/mmjax_gpu_demo")
    t0 = time.time()
    try:
        proc = subprocess.run(
            [*mmjax, "train", "--config", demo, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=max(10, budget - (time.time() - start) - 5),
        )
        out["train_wall_s"] = time.time() - t0
        out["train_tail"] = proc.stdout[-1500:] + proc.stderr[-1000:]
        metrics = workdir / "metrics.jsonl"
        if metrics.exists():
            out["last_metrics"] = json.loads(metrics.read_text().splitlines()[-1])
    except subprocess.TimeoutExpired:
        out["train_wall_s"] = f"> {time.time() - t0:.0f} (cut at the budget)"
    return out


def run_section(name: str, budget: float) -> dict:
    fn = globals()[f"section_{name}"]
    return fn(budget) if name in ("torch", "demo") else fn()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gpu")
    p.add_argument("--budget_s", type=float, default=450, help="the whole run's wall-time budget")
    p.add_argument("--section", default=None, help=argparse.SUPPRESS)  # the child process of one section
    p.add_argument("--section_budget", type=float, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.section:
        global PARTIAL
        PARTIAL = out_dir / f"{args.section}.json"
        save(run_section(args.section, args.section_budget))
        return
    started = time.time()
    report = {"command": "experiments/gpu/run.sh", "budget_s": args.budget_s, "sections": {}}
    for name, cap in SECTIONS.items():
        left = args.budget_s - (time.time() - started)
        budget = min(cap, left)
        if budget < 20:
            report["sections"][name] = {"skipped": f"{left:.0f} s of the budget left"}
            continue
        t0 = time.time()
        cmd = [sys.executable, __file__, "--out", str(out_dir), "--section", name, f"--section_budget={budget}"]
        # the B/16 section sizes its batch from the memory JAX may take, so it may take nearly all of it
        env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.95"} if name == "b16" else None
        part = out_dir / f"{name}.json"
        part.unlink(missing_ok=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget + 15, cwd=ROOT, env=env)
            error = proc.stderr[-3000:] if proc.returncode != 0 else None
        except subprocess.TimeoutExpired:
            error = f"timed out after {budget + 15:.0f} s"
        result = json.loads(part.read_text()) if part.exists() else {}
        if error:
            result["error"] = error
        result["wall_s"] = time.time() - t0
        report["sections"][name] = result
        report["wall_s"] = time.time() - started
        (out_dir / "gpu.json").write_text(json.dumps(report, indent=2, default=str))
        print(f"[{time.time() - started:5.0f} s] {name}: {json.dumps(result, default=str)[:600]}", flush=True)


if __name__ == "__main__":
    main()
