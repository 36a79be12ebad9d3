"""BertModel parity with transformers; scan and sharded loading, legacy key names, export back."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, bert_reference, perturb_params, tiny_bert  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import Bert  # noqa: E402
from mmjax.models import BertModel  # noqa: E402

CONFIGS = {
    "w20_h5_gelu": dict(width=20, heads=5, act="gelu"),
    "w36_h3_gelu_new_3types": dict(width=36, heads=3, act="gelu_new", type_vocab_size=3, seed=1),
    "w21_h7_relu_1layer": dict(width=21, heads=7, act="relu", layers=1, seed=2),
}


def bert_batch(type_vocab_size: int, vocab_size: int = 64, length: int = 10, seed: int = 0):
    """ids, mask and token types [3, length]: one full row, one right-padded, one left-padded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, (3, length))
    mask = np.ones((3, length), np.int64)
    mask[1, 6:] = 0
    mask[2, :3] = 0
    ids[mask == 0] = 0
    types = rng.integers(0, type_vocab_size, (3, length))
    return ids, mask, types


def run_bert(model, variables, ids, mask, types):
    fn = jax.jit(lambda v, i, m, t: model.apply(v, input_ids=i, attention_mask=m, token_type_ids=t))
    return jax.device_get(fn(variables, ids, mask, types))


def check_against_hf(hf, model, variables):
    ids, mask, types = bert_batch(hf.config.type_vocab_size, hf.config.vocab_size)
    ref = bert_reference(hf, ids, mask, types)
    return assert_parity(run_bert(model, variables, ids, mask, types), ref, {"last_hidden_state": mask})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bert_matches_transformers(name, tmp_path):
    hf = tiny_bert(**CONFIGS[name])
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    assert isinstance(model, BertModel)
    print(f"Bert {name} max abs diffs: {check_against_hf(hf, model, variables)}")


def test_bert_scan_and_sharded_load_matches_transformers(tmp_path):
    hf = tiny_bert(**CONFIGS["w36_h3_gelu_new_3types"])
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model, variables = load_pretrained(tmp_path, scan=True)
    assert variables["params"]["bert"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].shape == (2, 36, 73)
    print(f"Bert scan=True max abs diffs: {check_against_hf(hf, model, variables)}")


def test_legacy_and_prefixed_key_names_load(tmp_path):
    """`bert.`-prefixed keys (task checkpoints) and LayerNorm gamma/beta (TF era) load as the same weights."""
    hf = tiny_bert(layers=1)
    hf.save_pretrained(tmp_path / "plain", safe_serialization=True)
    tensors = load_file(tmp_path / "plain" / "model.safetensors")
    renamed = {}
    for key, value in tensors.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[f"bert.{key}"] = value
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "config.json").write_text((tmp_path / "plain" / "config.json").read_text())
    save_file(renamed, tmp_path / "legacy" / "model.safetensors", metadata={"format": "pt"})
    _, want = load_pretrained(tmp_path / "plain")
    _, got = load_pretrained(tmp_path / "legacy")
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_task_checkpoint_heads_are_reported_not_dropped(tmp_path):
    config = tiny_bert(layers=1).config
    config.architectures = ["BertForMaskedLM"]
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path, safe_serialization=True)
    # BertForMaskedLM has no pooler and an MLM head: both show up, under the names the checkpoint uses.
    with pytest.raises(ValueError, match=r"missing keys[\s\S]*pooler\.dense\.weight: \[20, 20\]") as err:
        load_pretrained(tmp_path)
    assert "cls.predictions.transform.dense.weight: [20, 20]" in str(err.value)
    with pytest.raises(ValueError, match=r"unexpected keys[\s\S]*cls\.predictions\.bias: \[64\]") as err:
        load_pretrained(tmp_path, add_pooler=False, pool="cls")
    assert "missing" not in str(err.value)


def mmjax_bert(scan: bool) -> BertModel:
    bert = Bert(vocab_size=64, width=30, depth=2, num_heads=6, mlp_dim=50, max_length=16, type_vocab_size=3, scan=scan)
    return BertModel(bert=bert)


@pytest.mark.parametrize("scan", [False, True])
def test_mmjax_bert_exports_to_transformers(scan, tmp_path):
    model = mmjax_bert(scan)
    ids, mask, types = bert_batch(3)
    shapes = jax.eval_shape(model.init, jax.random.key(0), ids, mask, types)
    variables = {"params": perturb_params(nn.meta.unbox(shapes["params"]), seed=2)}
    save_pretrained(model, variables, tmp_path)
    hf, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ours = run_bert(model, variables, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    diffs = assert_parity(ours, bert_reference(hf.eval(), ids, mask, types), {"last_hidden_state": mask})
    print(f"mmjax -> transformers Bert (scan={scan}) max abs diffs: {diffs}")


def test_transformers_bert_round_trips_state_dict(tmp_path):
    hf = tiny_bert(**CONFIGS["w36_h3_gelu_new_3types"])
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", scan=True)
    save_pretrained(model, variables, tmp_path / "ours", max_shard_bytes=30_000)
    back = transformers.BertModel.from_pretrained(tmp_path / "ours")
    want, got = hf.state_dict(), back.state_dict()
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert back.config.hidden_act == "gelu_new" and back.config.type_vocab_size == 3


def test_bfloat16_params_load_and_save(tmp_path):
    hf = tiny_bert(layers=1)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert model.bert.param_dtype == jnp.bfloat16
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.bfloat16)}
    save_pretrained(model, variables, tmp_path / "ours")
    back = transformers.BertModel.from_pretrained(tmp_path / "ours")
    assert back.dtype == torch.bfloat16
    for key, want in hf.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key].float().numpy(), want.bfloat16().float().numpy())
