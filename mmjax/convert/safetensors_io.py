"""Reading and writing Hugging Face `save_pretrained` directories: config.json + safetensors weights.

Only the safetensors format is read: it is plain tensors plus a JSON header, so loading a checkpoint can never
run code. PyTorch pickles (`pytorch_model.bin`) are refused with instructions to convert them once in PyTorch.

A directory holds either one `model.safetensors`, or shards listed by `model.safetensors.index.json`
(`{"weight_map": {tensor name: shard file}}`), which is what `save_pretrained` writes for large models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# Weight files of other formats that we recognize only to explain how to convert them.
_PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_OTHER_NAMES = ("tf_model.h5", "flax_model.msgpack")


class CheckpointFormatError(ValueError):
    """The directory is not a readable safetensors checkpoint (missing files, pickles, broken index)."""


def read_config(path: str | os.PathLike) -> dict:
    """config.json of a `save_pretrained` directory as a dict; a clear error when it is absent."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointFormatError(f"{path!r} is not a directory; expected a Hugging Face save_pretrained dir")
    config_file = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_file):
        raise CheckpointFormatError(
            f"{path!r} has no {CONFIG_NAME}; a Hugging Face save_pretrained directory holds it next to "
            f"{WEIGHTS_NAME}, as an open_clip checkpoint holds open_clip_config.json "
            f"(found: {sorted(os.listdir(path))})"
        )
    with open(config_file) as f:
        return json.load(f)


class SafetensorsCheckpoint:
    """Tensors of a checkpoint directory, read lazily: shapes come from the headers, data only on `read`.

    `shapes` maps every tensor name to its shape, so a checkpoint can be validated before any weight is loaded
    (which matters for multi-gigabyte models whose keys do not match).
    """

    def __init__(self, files: Mapping[str, str]):
        self._files = dict(files)  # tensor name -> absolute shard path
        self.shapes: dict[str, tuple[int, ...]] = {}
        for shard in sorted(set(self._files.values())):
            with safe_open(shard, framework="np") as f:
                for key in f.keys():
                    if key in self._files and self._files[key] == shard:
                        self.shapes[key] = tuple(f.get_slice(key).get_shape())
        missing = sorted(set(self._files) - set(self.shapes))
        if missing:
            raise CheckpointFormatError(f"the index lists tensors that their shard files do not hold: {missing}")

    @classmethod
    def from_file(cls, file: str) -> SafetensorsCheckpoint:
        """Every tensor of one safetensors file."""
        with safe_open(file, framework="np") as f:
            return cls({key: file for key in f.keys()})

    def keys(self) -> list[str]:
        return sorted(self.shapes)

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The named tensors as numpy arrays, opening each shard once."""
        by_shard: dict[str, list[str]] = {}
        for key in keys:
            by_shard.setdefault(self._files[key], []).append(key)
        out = {}
        for shard, names in by_shard.items():
            with safe_open(shard, framework="np") as f:
                for name in names:
                    out[name] = f.get_tensor(name)
        return out


def open_checkpoint(path: str | os.PathLike) -> SafetensorsCheckpoint:
    """The safetensors weights of a `save_pretrained` directory (single file or sharded with an index)."""
    path = os.fspath(path)
    single = os.path.join(path, WEIGHTS_NAME)
    index = os.path.join(path, INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointFormatError(f"{index} has no 'weight_map' of tensor name -> shard file")
        files = {key: os.path.join(path, shard) for key, shard in weight_map.items()}
        absent = sorted({shard for shard in files.values() if not os.path.isfile(shard)})
        if absent:
            raise CheckpointFormatError(f"{index} names shard files that are not in {path!r}: {absent}")
        return SafetensorsCheckpoint(files)
    if os.path.isfile(single):
        return SafetensorsCheckpoint.from_file(single)
    present = sorted(os.listdir(path))
    if any(name in present for name in _PICKLE_NAMES):
        raise CheckpointFormatError(
            f"{path!r} holds PyTorch pickle weights ({', '.join(n for n in _PICKLE_NAMES if n in present)}), "
            "which mmjax never loads because unpickling can run arbitrary code. Convert them once with "
            "transformers, in an environment you trust: `model = AutoModel.from_pretrained(dir); "
            "model.save_pretrained(dir, safe_serialization=True)`, which writes model.safetensors."
        )
    if any(name in present for name in _OTHER_NAMES):
        raise CheckpointFormatError(
            f"{path!r} holds TensorFlow/Flax weights only; load it in transformers and re-save it with "
            "`save_pretrained(dir, safe_serialization=True)` to get model.safetensors."
        )
    raise CheckpointFormatError(f"{path!r} has neither {WEIGHTS_NAME} nor {INDEX_NAME} (found: {present})")


def write_checkpoint(
    path: str | os.PathLike,
    config: Mapping,
    tensors: Mapping[str, np.ndarray],
    *,
    max_shard_bytes: int | None = None,
) -> None:
    """Write config.json and the tensors as `save_pretrained` does.

    One model.safetensors, or with `max_shard_bytes` shards `model-0000i-of-0000n.safetensors` plus the index.
    The header's {"format": "pt"} is what transformers requires before it accepts a safetensors file.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG_NAME), "w") as f:
        json.dump(dict(config), f, indent=2, sort_keys=True)
        f.write("\n")
    # safetensors wants C-contiguous buffers; transposed views from the mapping are not. (Not
    # np.ascontiguousarray: it turns 0-d arrays such as CLIP's logit_scale into shape [1].)
    tensors = {key: np.asarray(value).copy(order="C") for key, value in tensors.items()}
    metadata = {"format": "pt"}
    for stale in (WEIGHTS_NAME, INDEX_NAME):  # never leave a previous save's weights to shadow this one
        if os.path.exists(os.path.join(path, stale)):
            os.remove(os.path.join(path, stale))
    if max_shard_bytes is None:
        save_file(tensors, os.path.join(path, WEIGHTS_NAME), metadata=metadata)
        return
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for key in sorted(tensors):
        if shards[-1] and size + tensors[key].nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += tensors[key].nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(path, name), metadata=metadata)
        weight_map.update({key: name for key in shard})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(path, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
