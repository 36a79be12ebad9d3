"""VisualBERT parity with transformers for the four classes, round trips through save_pretrained, strict keys."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_oracle import assert_parity, randomize_  # noqa: E402

from mmjax.convert import load_pretrained, save_pretrained  # noqa: E402
from mmjax.encoders import Bert, ViT  # noqa: E402
from mmjax.encoders.regions import RegionEmbeddings  # noqa: E402
from mmjax.models.visualbert import VisualBertModel  # noqa: E402
from mmjax.models.visualbert_heads import (  # noqa: E402
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForVisualReasoning,
)

VOCAB, WIDTH, FEATURES, TEXT, REGIONS = 64, 20, 12, 7, 4

# name -> (transformers class, config changes, outputs to compare besides the base model's)
CASES = {
    "model": ("VisualBertModel", {}, ()),
    "pretraining_tied": ("VisualBertForPreTraining", {}, ("prediction_logits", "seq_relationship_logits")),
    "pretraining_untied_relu": (
        "VisualBertForPreTraining",
        dict(tie_word_embeddings=False, hidden_act="relu"),
        ("prediction_logits", "seq_relationship_logits"),
    ),
    "vqa": ("VisualBertForQuestionAnswering", dict(num_labels=9, hidden_act="gelu_new"), ("logits",)),
    "nlvr2": ("VisualBertForVisualReasoning", dict(num_labels=2, num_hidden_layers=1), ("logits",)),
}


def tiny_visual_bert(arch: str, seed: int = 0, **changes):
    config = transformers.VisualBertConfig(
        **{
            **dict(
                vocab_size=VOCAB,
                hidden_size=WIDTH,
                num_hidden_layers=2,
                num_attention_heads=5,
                intermediate_size=2 * WIDTH + 1,
                visual_embedding_dim=FEATURES,
                max_position_embeddings=16,
                type_vocab_size=2,
                pad_token_id=0,
            ),
            **changes,
        }
    )
    return randomize_(getattr(transformers, arch)(config), seed)


def visual_batch(seed: int = 0, alignment: bool = False) -> dict:
    """Three examples: text right-padded, full, left-padded; regions full, right-padded, left-padded."""
    rng = np.random.default_rng(seed)
    mask = np.ones((3, TEXT), np.int64)
    mask[0, 5:] = 0
    mask[2, :2] = 0
    vmask = np.ones((3, REGIONS), np.int64)
    vmask[1, 2:] = 0
    vmask[2, :1] = 0
    ids = rng.integers(1, VOCAB, (3, TEXT))
    ids[mask == 0] = 0
    batch = dict(
        input_ids=ids,
        attention_mask=mask,
        token_type_ids=rng.integers(0, 2, (3, TEXT)),
        visual_embeds=rng.normal(size=(3, REGIONS, FEATURES)).astype(np.float32),
        visual_attention_mask=vmask,
        visual_token_type_ids=rng.integers(0, 2, (3, REGIONS)),
    )
    if alignment:  # up to 3 aligned words per region, -1 = none; region 0 of example 0 has no word at all
        align = rng.integers(-1, TEXT, (3, REGIONS, 3))
        align[0, 0] = -1
        batch["image_text_alignment"] = align
    return batch


def hf_outputs(hf, batch, names) -> dict:
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in batch.items()})
    return {name: out[name].numpy() for name in names}


def ours(model, variables, batch) -> dict:
    return jax.device_get(applier(model)(variables, batch))


def applier(model):
    """One jitted apply per model, so a test that runs it twice compiles once."""
    if model not in _APPLY:
        _APPLY[model] = jax.jit(lambda v, b: model.apply(v, **b))
    return _APPLY[model]


_APPLY: dict = {}


def token_masks(batch) -> dict:
    joint = np.concatenate([batch["attention_mask"], batch["visual_attention_mask"]], axis=1)
    return {"last_hidden_state": joint, "prediction_logits": joint}


def compare(hf, model, variables, batch, names) -> dict:
    return assert_parity(ours(model, variables, batch), hf_outputs(hf, batch, names), token_masks(batch))


@pytest.mark.parametrize("case", sorted(CASES))
def test_visualbert_matches_transformers_and_round_trips(case, tmp_path):
    arch, changes, head_outputs = CASES[case]
    hf = tiny_visual_bert(arch, seed=len(case), **changes)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, variables = load_pretrained(tmp_path / "hf")
    assert type(model).__name__ == arch
    names = ("last_hidden_state", "pooler_output") if arch == "VisualBertModel" else head_outputs
    batch = visual_batch(seed=1)
    print(f"VisualBERT {case} max abs diffs: {compare(hf, model, variables, batch, names)}")

    # mmjax -> transformers: the same tensors under the same names, and the same outputs.
    save_pretrained(model, variables, tmp_path / "ours")
    back, info = getattr(transformers, arch).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    want, got = hf.state_dict(), back.state_dict()
    assert sorted(want) == sorted(got)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert_parity(ours(model, variables, batch), hf_outputs(back.eval(), batch, names), token_masks(batch))


def test_image_text_alignment_and_scan_match_transformers(tmp_path):
    hf = tiny_visual_bert("VisualBertModel", seed=5)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path, scan=True)
    assert variables["params"]["bert"]["encoder"]["layers"]["mlp"]["fc1"]["kernel"].shape == (2, WIDTH, 41)
    batch = visual_batch(seed=2, alignment=True)
    diffs = compare(hf, model, variables, batch, ("last_hidden_state", "pooler_output"))
    print(f"VisualBERT image_text_alignment, scan=True max abs diffs: {diffs}")


def test_vision_pairs_match_flattened_transformers_input(tmp_path):
    """Per-image region inputs [B, 2, R, D_v] are the flattened [B, 2R, D_v] Hugging Face takes."""
    hf = tiny_visual_bert("VisualBertForVisualReasoning", seed=3, num_hidden_layers=1)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, variables = load_pretrained(tmp_path)
    flat = visual_batch(seed=4)
    flat["visual_embeds"] = np.concatenate([flat["visual_embeds"], flat["visual_embeds"][:, ::-1]], axis=1)
    for key in ("visual_attention_mask", "visual_token_type_ids"):
        flat[key] = np.concatenate([flat[key], np.ones_like(flat[key])], axis=1)
    pairs = dict(flat)
    for key in ("visual_embeds", "visual_attention_mask", "visual_token_type_ids"):
        pairs[key] = flat[key].reshape(3, 2, REGIONS, *flat[key].shape[2:])
    assert_parity(ours(model, variables, pairs), hf_outputs(hf, flat, ("logits",)))


def test_task_checkpoint_without_architectures_reports_head_keys(tmp_path):
    hf = tiny_visual_bert("VisualBertForQuestionAnswering", num_labels=5, num_hidden_layers=1)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    # model_type picks VisualBertModel; the QA head shows up as unexpected, under the checkpoint's names.
    with pytest.raises(ValueError, match=r"unexpected keys[\s\S]*cls\.weight: \[5, 20\]"):
        load_pretrained(tmp_path)


def test_unsupported_configs_are_refused(tmp_path):
    hf = tiny_visual_bert("VisualBertModel", num_hidden_layers=1, bypass_transformer=True)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(ValueError, match="bypass_transformer=True is not supported"):
        load_pretrained(tmp_path)

    # The config is checked before any weight: grid mode and box embeddings have no Hugging Face form.
    bert = Bert(vocab_size=VOCAB, width=WIDTH, depth=1, num_heads=5, max_length=16)
    vit = ViT(width=8, depth=1, num_heads=2, patch_size=4, image_size=8)
    grid = VisualBertModel(bert, RegionEmbeddings(WIDTH, max_length=16, image_tower=vit))
    with pytest.raises(ValueError, match=r"visual\.image_tower='ViT'"):
        save_pretrained(grid, {"params": {}}, tmp_path / "grid")
    boxes = VisualBertModel(bert, RegionEmbeddings(WIDTH, FEATURES, max_length=16, use_boxes=True))
    with pytest.raises(ValueError, match=r"visual\.use_boxes=True"):
        save_pretrained(VisualBertForQuestionAnswering(boxes, num_labels=3), {"params": {}}, tmp_path / "boxes")


@pytest.mark.parametrize(
    "cls", [VisualBertForPreTraining, VisualBertForQuestionAnswering, VisualBertForVisualReasoning]
)
def test_overrides_reach_bert_and_labels_come_from_config(cls, tmp_path):
    arch = cls.__name__
    hf = tiny_visual_bert(arch, num_hidden_layers=1, **({} if cls is VisualBertForPreTraining else {"num_labels": 3}))
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, _ = load_pretrained(tmp_path, scan=True, bert={"remat": True})
    assert model.visual_bert.bert.scan and model.visual_bert.bert.remat
    if cls is not VisualBertForPreTraining:
        assert model.num_labels == 3
