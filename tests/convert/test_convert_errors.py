"""Bad checkpoints fail loudly: mismatched keys with shapes, pickles, unknown architectures, broken dirs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import tiny_bert  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from mmjax.convert import (  # noqa: E402
    CheckpointFormatError,
    CheckpointMismatchError,
    load_pretrained,
    save_pretrained,
)


@pytest.fixture
def bert_dir(tmp_path):
    tiny_bert(layers=1).save_pretrained(tmp_path, safe_serialization=True)
    return tmp_path


def rewrite_weights(path, edit):
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_unexpected_and_misshaped_keys_are_all_listed_with_shapes(bert_dir):
    def edit(t):
        del t["encoder.layer.0.attention.self.key.bias"]
        t["encoder.layer.0.attention.self.extra.weight"] = np.zeros((3, 4), np.float32)
        t["encoder.layer.0.intermediate.dense.weight"] = np.zeros((40, 20), np.float32)  # expected [41, 20]

    rewrite_weights(bert_dir, edit)
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(bert_dir)
    msg = str(err.value)
    assert "missing keys (1)" in msg and "encoder.layer.0.attention.self.key.bias: [20]" in msg
    assert "unexpected keys (1)" in msg and "encoder.layer.0.attention.self.extra.weight: [3, 4]" in msg
    assert "mis-shaped keys (1)" in msg
    assert "encoder.layer.0.intermediate.dense.weight: expected [41, 20], got [40, 20]" in msg
    assert err.value.missing == {"encoder.layer.0.attention.self.key.bias": (20,)}


def test_config_disagreeing_with_weights_is_a_shape_error(bert_dir):
    """A config that promises more layers than the weights hold never leaves layers randomly initialized."""
    config = json.loads((bert_dir / "config.json").read_text())
    config["num_hidden_layers"] = 2
    (bert_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"encoder\.layer\.1\.output\.dense\.weight: \[20, 41\]"):
        load_pretrained(bert_dir)


def test_known_buffers_are_ignored_by_name(bert_dir):
    def edit(t):
        t["embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
        t["embeddings.token_type_ids"] = np.zeros((1, 16), np.int64)

    rewrite_weights(bert_dir, edit)
    load_pretrained(bert_dir)  # no error

    rewrite_weights(bert_dir, lambda t: t.update({"embeddings.other_ids": np.zeros(2, np.int64)}))
    with pytest.raises(CheckpointMismatchError, match="embeddings.other_ids"):
        load_pretrained(bert_dir)


def test_pickle_only_directory_is_refused_with_conversion_instructions(tmp_path):
    tiny_bert(layers=1).config.to_json_file(tmp_path / "config.json")
    # Not a valid pickle: if anything tried to unpickle it the error would be a different one.
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not a real pickle")
    with pytest.raises(CheckpointFormatError, match="never loads") as err:
        load_pretrained(tmp_path)
    assert "save_pretrained(dir, safe_serialization=True)" in str(err.value)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(
        ValueError, match=r"GPT2LMHeadModel[\s\S]*'BertModel', 'CLIPModel', 'SiglipModel', 'SiglipTextModel'"
    ):
        load_pretrained(tmp_path)


def test_missing_config_or_directory(tmp_path):
    with pytest.raises(CheckpointFormatError, match="no config.json"):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointFormatError, match="not a directory"):
        load_pretrained(tmp_path / "nope")


def test_broken_shard_index(tmp_path):
    tiny_bert(layers=1).save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / shard).unlink()
    with pytest.raises(CheckpointFormatError, match=shard):
        load_pretrained(tmp_path)


def test_unsupported_config_values(bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    (bert_dir / "config.json").write_text(json.dumps({**config, "hidden_act": "mish"}))
    with pytest.raises(ValueError, match="hidden_act='mish'"):
        load_pretrained(bert_dir)


def test_save_refuses_variables_that_do_not_match_the_model(bert_dir, tmp_path):
    model, variables = load_pretrained(bert_dir)
    params = jax.tree.map(lambda x: x, variables["params"])
    del params["bert"]["pooler"]
    with pytest.raises(CheckpointMismatchError, match=r"bert/pooler/kernel: \[20, 20\]"):
        save_pretrained(model, {"params": params}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
