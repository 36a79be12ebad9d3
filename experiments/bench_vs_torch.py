"""mmjax's CLIP train step against `transformers.CLIPModel` in PyTorch, on one Hugging Face directory.

    python experiments/bench_vs_torch.py                       # CPU: float32, eager and torch.compile
    python experiments/bench_vs_torch.py --device cuda --bf16  # a GPU: also bf16 autocast with SDPA attention
    python experiments/bench_vs_torch.py --json out.json --sizes 8,16,32,64

Both sides load the same weights from one `save_pretrained` directory (random weights of the given shape: vision
`--vision_width` x `--vision_depth` with `--patch` px patches at `--image_size`, text `--text_width` x
`--text_depth` over 77 tokens), train on the same batch with the same optimizer (AdamW, lr 1e-4, weight decay 0.1,
no clipping) and the same softmax contrastive loss. Runs are interleaved (mmjax, eager, compile, mmjax, ...) so a
change in machine load hits every side alike; each figure is the median of `--repeats` timed runs of `--steps`
steps after warm-up. Then mmjax's step time and XLA's memory estimate as the batch grows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np


def make_hf_dir(args, path: pathlib.Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        vision_config=dict(
            hidden_size=args.vision_width,
            num_hidden_layers=args.vision_depth,
            num_attention_heads=args.vision_width // 64,
            intermediate_size=4 * args.vision_width,
            image_size=args.image_size,
            patch_size=args.patch,
        ),
        text_config=dict(
            hidden_size=args.text_width,
            num_hidden_layers=args.text_depth,
            num_attention_heads=args.text_width // 64,
            intermediate_size=4 * args.text_width,
            max_position_embeddings=77,
        ),
        projection_dim=args.embed_dim,
    )
    CLIPModel(config).save_pretrained(path, safe_serialization=True)


def batch(args, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "pixels": rng.standard_normal((size, args.image_size, args.image_size, 3)).astype(np.float32),
        "ids": rng.integers(1, 49000, (size, 77)).astype(np.int32),
        "mask": np.ones((size, 77), np.int32),
    }


class MmjaxStep:
    """The jitted train step mmjax's trainer runs, on a model loaded from the directory."""

    def __init__(self, path, args, size):
        import jax
        import jax.numpy as jnp
        import optax
        from flax import linen as nn

        from mmjax.convert import load_pretrained
        from mmjax.layers.flops import function_flops
        from mmjax.losses import softmax_contrastive_loss

        dtype = jnp.bfloat16 if args.bf16 else jnp.float32
        overrides = {"attention_impl": args.attention_impl} if args.attention_impl else {}
        self.model, variables = load_pretrained(path, dtype=dtype, **overrides)
        params = nn.meta.unbox(variables["params"])
        self.tx = optax.adamw(1e-4, weight_decay=0.1)

        def loss_fn(p, b):
            out = self.model.apply({"params": p}, b["pixels"], b["ids"], b["mask"], train=True)
            return softmax_contrastive_loss(out["logits_per_image"].astype(jnp.float32))[0]

        def step(p, opt, b):
            loss, grads = jax.value_and_grad(loss_fn)(p, b)
            updates, opt = self.tx.update(grads, opt, p)
            return optax.apply_updates(p, updates), opt, loss

        self.params, self.opt = params, self.tx.init(params)
        self.batch = jax.device_put(batch(args, size))
        self.compiled = jax.jit(step, donate_argnums=(0, 1)).lower(self.params, self.opt, self.batch).compile()
        # model FLOPs (contractions of the loss and its gradient): XLA's own count on a GPU misses cuBLAS/cuDNN work
        self.flops = function_flops(jax.grad(loss_fn), self.params, self.batch)
        memory = self.compiled.memory_analysis()
        self.temp_bytes = getattr(memory, "temp_size_in_bytes", None)

    def run(self, steps: int) -> float:
        import jax

        t0 = time.perf_counter()
        for _ in range(steps):
            self.params, self.opt, loss = self.compiled(self.params, self.opt, self.batch)
        jax.block_until_ready(loss)
        return (time.perf_counter() - t0) / steps


class TorchStep:
    """transformers' CLIPModel, eager or torch.compile'd, the same loss and optimizer."""

    def __init__(self, path, args, size, *, compile_: bool):
        import torch
        from transformers import CLIPModel

        self.torch = torch
        self.device = torch.device(args.device)
        kw = {"attn_implementation": "sdpa"} if args.device == "cuda" else {}
        self.model = CLIPModel.from_pretrained(path, **kw).to(self.device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1)
        b = batch(args, size)
        self.pixels = torch.from_numpy(b["pixels"]).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.ids = torch.from_numpy(b["ids"]).long().to(self.device)
        self.mask = torch.from_numpy(b["mask"]).long().to(self.device)
        self.bf16 = args.bf16
        self.step = torch.compile(self._step) if compile_ else self._step

    def _step(self):
        torch = self.torch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(pixel_values=self.pixels, input_ids=self.ids, attention_mask=self.mask)
        logits = out.logits_per_image.float()
        labels = torch.arange(logits.shape[0], device=self.device)
        loss = (
            torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)
        ) / 2
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        loss.item()
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps


def compare(path, args) -> dict:
    sides = {"mmjax (jax.jit)": MmjaxStep(path, args, args.batch)}
    sides["pytorch eager"] = TorchStep(path, args, args.batch, compile_=False)
    if not args.no_compile:
        sides["pytorch torch.compile"] = TorchStep(path, args, args.batch, compile_=True)
    for side in sides.values():  # warm-up (torch.compile compiles here)
        side.run(args.warmup)
    times = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, side in sides.items():  # interleaved: load changes hit every side alike
            times[name].append(side.run(args.steps))
    medians = {name: statistics.median(t) for name, t in times.items()}
    flops = sides["mmjax (jax.jit)"].flops
    return {"median_step_s": medians, "all_step_s": times, "model_flops_per_step": flops}


def scaling(path, args) -> list[dict]:
    rows = []
    for size in args.sizes:
        step = MmjaxStep(path, args, size)
        step.run(args.warmup)
        seconds = statistics.median(step.run(args.steps) for _ in range(args.repeats))
        rows.append({"batch": size, "step_s": seconds, "examples_per_s": size / seconds, "temp_bytes": step.temp_bytes})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda (the PyTorch side; JAX uses its default backend)")
    p.add_argument("--bf16", action="store_true", help="bf16 compute on both sides (autocast in PyTorch)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    p.add_argument("--sizes", default="8,16,32,64", help="batch sizes for mmjax's scaling table ('' to skip)")
    p.add_argument("--vision_width", type=int, default=384)
    p.add_argument("--vision_depth", type=int, default=6)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--text_width", type=int, default=256)
    p.add_argument("--text_depth", type=int, default=6)
    p.add_argument("--embed_dim", type=int, default=256)
    p.add_argument("--attention_impl", default=None, help="mmjax's attention kernel: xla | cudnn (default: its choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    import jax
    import torch

    from mmjax.train.metrics import device_peak_flops

    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        make_hf_dir(args, pathlib.Path(tmp))
        result = compare(tmp, args)
        result["scaling"] = scaling(tmp, args) if args.sizes else []
    med = result["median_step_s"]
    mm = med["mmjax (jax.jit)"]
    print(
        f"\nCLIP train step, batch {args.batch}, {'bf16' if args.bf16 else 'float32'}, "
        f"jax {jax.__version__} ({jax.devices()[0].device_kind}), torch {torch.__version__} ({args.device})"
    )
    peak = device_peak_flops()
    print("| side | median step | ratio (side / mmjax) | model TFLOP/s | MFU |")
    print("|---|---|---|---|---|")
    for name, seconds in med.items():
        rate = result["model_flops_per_step"] / seconds
        mfu = f"{rate / peak:.1%}" if peak else "n/a"
        print(f"| {name} | {1000 * seconds:.0f} ms | {seconds / mm:.2f}x | {rate / 1e12:.3f} | {mfu} |")
    if result["scaling"]:
        print("\n| batch | mmjax step | examples/s | XLA temp memory |")
        print("|---|---|---|---|")
        for row in result["scaling"]:
            mem = f"{row['temp_bytes'] / 2**20:.0f} MiB" if row["temp_bytes"] else "n/a"
            print(f"| {row['batch']} | {1000 * row['step_s']:.0f} ms | {row['examples_per_s']:.1f} | {mem} |")
    result.update(
        args=vars(args),
        host=f"{platform.machine()} {platform.processor()} cpus={os.cpu_count()}",
        jax=jax.__version__,
        torch=torch.__version__,
        wall_s=time.time() - started,
        command=" ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
