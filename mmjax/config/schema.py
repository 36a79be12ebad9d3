"""THE schema: every config key, its default and a one-line doc, in one place.

A key is declared as `(default, doc)` or `(default, doc, choices)`; a nested dict is a group. Three kinds of group
take their keys from what they name, so each component declares its own keys next to itself:
  Named("tower")    `model.image`, `model.text`, ...: {name, ...the fields of that encoder's Linen module}
  Named("fusion")   `model.fusion`: {name, ...the fields of that fusion module}
  Entries()         `evals`: {entry name: {type, split, every, ... + the keys its evaluator class declares}}
`config.model` is declared by the task (`Task.MODEL_KEYS` in mmjax/train/tasks/), chosen by `config.task`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mmjax.config.errors import ConfigError

REQUIRED = "(required)"


@dataclasses.dataclass(frozen=True)
class Named:
    """A group whose keys are those of the component its `name` key selects from a table (`tower`, `fusion`)."""

    table: str
    default: str | None
    doc: str


@dataclasses.dataclass(frozen=True)
class Entries:
    """A group of user-named entries, each a group chosen by its `type` (evaluators)."""

    doc: str


def defaults(keys: dict) -> dict:
    """A declaration table (plain keys and groups) -> the nested dict of its defaults."""
    return {k: defaults(v) if isinstance(v, dict) else v[0] for k, v in keys.items()}


OPTIM = {
    "name": ("adamw", "optimizer", ("adamw", "lamb", "sgd")),
    "lr": (1e-3, "peak learning rate"),
    "schedule": ("cosine", "learning-rate shape after warmup", ("cosine", "linear", "constant")),
    "warmup_steps": (0, "linear warmup from 0 over this many steps"),
    "end_lr_factor": (0.0, "final learning rate = lr * end_lr_factor (cosine, linear)"),
    "b1": (0.9, "Adam/LAMB first-moment decay"),
    "b2": (0.999, "Adam/LAMB second-moment decay"),
    "eps": (1e-8, "Adam/LAMB epsilon"),
    "momentum": (0.0, "SGD momentum (0: none)"),
    "nesterov": (False, "SGD: Nesterov momentum"),
    "weight_decay": (0.0, "decoupled weight decay on kernels (ndim >= 2), never on norms or biases"),
    "clip_norm": (1.0, "global gradient-norm clipping (0: off)"),
    "grad_accum_steps": (1, "micro-batches per step (activation memory of one micro-batch)"),
    "rules": ([], "[(regex over param paths, {freeze | lr_mult | weight_decay_mult: value})], first match wins"),
}

TOP = {
    "task": ("", "what to train: a name in mmjax.train.tasks.TASKS", None),  # choices filled from the table
    "config_spec": ("", "the file[:variant] the config was loaded from (set by load_config)"),
    "model": {"dtype": ("float32", "compute dtype; params stay float32", ("float32", "bfloat16", "float16"))},
    "optim": OPTIM,
    "mesh": {
        "data": (-1, "devices along the data axis (-1: the rest)"),
        "fsdp": (1, "devices along the FSDP axis (parameters split along embed)"),
        "tensor": (1, "devices along the tensor-parallel axis (mlp, heads, vocab split)"),
    },
    "dcn_mesh": (None, "multi-slice TPU: {axis: ways} splitting mesh axes across slices (None: one slice)", None, dict),
    "sharding": ("dp", "logical-axis rule preset", ("dp", "fsdp", "fsdp_tp")),
    "batch_size": (256, "global batch, over all devices and processes"),
    "total_steps": (1000, "training steps"),
    "log_every": (50, "steps between metrics.jsonl lines"),
    "eval_every": (1000, "default evaluator schedule in steps (0: never evaluate)"),
    "checkpoint_every": (500, "steps between checkpoints (and at the end, and on SIGTERM)"),
    "keep_checkpoints": (3, "newest checkpoints kept"),
    "seed": (0, "initialization, shuffling, augmentation and dropout all follow from it"),
    "evals": Entries("evaluators by name: {type, split, every, ...}; default: the task's"),
    "init_from": {
        "kind": (
            "",
            "start from other weights: '' (off), mmjax (a workdir) or hf (a save_pretrained dir)",
            ("", "mmjax", "hf"),
        ),  # fmt: skip
        "path": ("", "the workdir or directory"),
        "source": ("", "'/'-separated subtree of the loaded params to take ('' = all), e.g. 'bert'; or a comma list"),
        "target": (
            "",
            "'/'-separated subtree of this model's params to fill ('' = all), e.g. 'text_tower'; a comma "
            "list pairs with source's in order",
        ),
        "adapt": (
            "",
            "'' (as is), or inflate_central / inflate_average (image ViT -> model.image's video_vit), ast_from_vit",
            ("", "inflate_central", "inflate_average", "ast_from_vit"),
        ),  # fmt: skip
    },
    "on_nonfinite": ("error", "a non-finite loss or gradient stops the run, or skips the update", ("error", "skip")),
    "profile_steps": ((), "(first, last), counted from 1: trace these steps into workdir/profile"),
    "progress": (True, "show the progress bar"),
    "cpu_fast_compile": (
        False,
        "on a CPU, compile without XLA's backend optimisation passes: 1.5-3x faster compiles, slower steps; for "
        "seconds-long runs (every `tiny` variant sets it)",
    ),
}

EVAL_KEYS = {
    "type": (None, "the evaluator: a name in mmjax.train.evaluate.EVALUATORS; default: the entry's name", None, str),
    "split": ("validation", "the split it evaluates (TFDS slicing allowed, e.g. 'train[:5%]')"),
    "every": (None, "steps between runs; None: eval_every; 0: never during training", None, int),
    "at_end": (None, "also run after the last step; None: when it runs during training", None, bool),
    "batch_size": (None, "global eval batch; None: batch_size", None, int),
    "prefix": (
        None,
        "prefix of its metric names in eval.json; None: the entry's name unless it equals the type",
        None,
        str,
    ),  # fmt: skip
}

# One-line docs of the fields most modules share, where a module's docstring does not say more.
FIELD_DOCS = {
    "width": "model width D (channels for CNNs)",
    "depth": "number of layers (ResNet: its depth, one of 18, 26, 34, 50, ...)",
    "num_layers": "number of layers",
    "num_heads": "attention heads (divides width)",
    "mlp_dim": "MLP hidden width; None: 4 x width",
    "patch_size": "side of the square patches, in pixels",
    "image_size": "input image side, in pixels (sets the position table)",
    "channels": "input channels",
    "max_length": "position table length: the longest input in tokens",
    "vocab_size": "token embedding rows (None or unset: the tokenizer's vocabulary)",
    "type_vocab_size": "token-type (segment) embedding rows",
    "activation": "MLP activation (gelu, quick_gelu, relu, ...)",
    "layer_norm_eps": "LayerNorm epsilon",
    "dropout_rate": "dropout on residual branches (training only)",
    "attention_dropout_rate": "dropout on attention weights (training only)",
    "attention_impl": "attention kernel: None (cuDNN's on a GPU where it applies, else XLA's), 'xla' or 'cudnn'",
    "remat": "recompute each layer's activations in the backward pass (less memory, more compute)",
    "scan": "run the layers with lax.scan (one compiled layer: faster compiles for deep stacks)",
    "pool": "how tokens become the pooled vector",
    "pooling": "how tokens become the pooled vector",
    "patch_bias": "bias in the patch embedding",
    "causal": "causal self-attention mask",
    "eos_token_id": "pool='eos' pools at this token (None: the tokenizer's end token)",
    "add_pooler": "BERT's tanh pooler on the first token",
    "fusion_layer": "layers kept per modality before fusion starts",
    "n_bottlenecks": "bottleneck tokens shared between modalities",
    "combine": "how pooled vectors combine",
    "modalities": "the order modalities are processed in (None: sorted by name)",
    "joint": "the layers after fusion_layer: 'concat' (shared blocks over all tokens) or 'coattention'",
}

# Module fields that are never config: the compute dtype comes from model.dtype, the rest are Linen's own.
_NOT_CONFIG = {"dtype", "param_dtype", "parent", "name"}


def tables() -> dict[str, dict]:
    """The tables components are chosen from by name. Imported here, on first use, so that importing the config
    package stays light and the model floors never import it back."""
    from mmjax.encoders import TOWERS
    from mmjax.fusion import FUSIONS
    from mmjax.train.evaluate import EVALUATORS
    from mmjax.train.tasks import TASKS

    return {"tower": TOWERS, "fusion": FUSIONS, "evaluator": EVALUATORS, "task": TASKS}


def _field_docs(cls) -> dict[str, str]:
    """'name:   text' lines of a class docstring -> {name: text} (the one-line docs of module fields)."""
    docs = {}
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"\s*([a-z_][a-z0-9_]*):\s+(\S.*)$", line)
        if m:
            docs.setdefault(m.group(1), m.group(2).strip())
    return docs


_ANNOTATED = {"int": int, "float": float, "str": str, "bool": bool, "None": None}


def _annotated_kind(annotation) -> type | None:
    """'int | None' -> int: the one plain type a field's annotation allows besides None (None: anything else)."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", "")
    names = [part.strip() for part in annotation.split("|")]
    kinds = {_ANNOTATED[n] for n in names if n in _ANNOTATED} - {None}
    return next(iter(kinds)) if len(kinds) == 1 and all(n in _ANNOTATED for n in names) else None


def module_keys(cls, where: str) -> dict[str, tuple]:
    """The declaration of a Linen module's configurable fields, from its dataclass fields and docstring."""
    docs = _field_docs(cls)
    keys = {}
    for f in dataclasses.fields(cls):
        if f.name in _NOT_CONFIG or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        doc = docs.get(f.name) or FIELD_DOCS.get(f.name, f"field of {where}")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            doc = f"{REQUIRED} {doc}"
        keys[f.name] = (default, doc, None, _annotated_kind(f.type))
    return keys


def named_keys(named: Named, name: str, path: str, raw: dict) -> dict:
    """The declaration of a Named group whose `name` is `name`."""
    table = tables()[named.table]
    if name not in table:
        raise ConfigError(f"config key '{path}.name' is {name!r}; expected one of {sorted(table)}")
    cls = table[name]
    keys = {"name": (named.default, named.doc, tuple(sorted(table)))}
    fields = module_keys(cls, f"{cls.__module__}.{cls.__name__}")
    if hasattr(cls, "from_variant"):
        keys["variant"] = (None, "named sizes (e.g. 'B/16') filling the size fields not set; None: none")
        variant = raw.get("variant")
        if variant:
            try:
                sized = cls.variant_fields(variant)
            except ValueError as e:
                raise ConfigError(f"config key '{path}.variant': {e}") from None
            fields = {k: (sized.get(k, v[0]), *v[1:]) for k, v in fields.items()}
    keys.update(fields)
    return keys


def task_class(name: Any, path: str = "task"):
    table = tables()["task"]
    if name not in table:
        raise ConfigError(f"config key {path!r} is {name!r}; expected one of {sorted(table)}")
    return table[name]


def evaluator_class(name: Any, path: str):
    table = tables()["evaluator"]
    if name not in table:
        raise ConfigError(f"config key {path!r} is {name!r}; expected one of {sorted(table)}")
    return table[name]


def declaration(raw: dict) -> dict:
    """The schema for a config whose stated keys are `raw`: TOP with `model` from the task, `data` from data/."""
    from mmjax.data.schema import KEYS as DATA_KEYS

    task = task_class(raw.get("task", TOP["task"][0]))
    return {
        **TOP,
        "task": (TOP["task"][0], TOP["task"][1], tuple(sorted(tables()["task"]))),
        "model": {**TOP["model"], **task.MODEL_KEYS},
        "data": DATA_KEYS,
    }
