"""VisualBERT pretraining: masked language modelling + sentence-image prediction on image-caption pairs.

Needs a BERT WordPiece tokenizer (data.tokenizer.kind='bert', its [MASK] token). Each step masks 15% of the
real, non-special text tokens (80% -> [MASK], 10% -> a random token, 10% kept) and, for half of the examples,
swaps in another example's image so the model must tell matching from mismatching pairs (label 1 = mismatch,
as Hugging Face's seq_relationship). model.visual: 'grid' (model.image tower) as in task_vqa.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import losses
from mmjax.encoders import RegionEmbeddings
from mmjax.models import VisualBertForPreTraining, VisualBertModel
from mmjax.train.task_base import Task, to_host, tokenizer_of, tower_from_config


def mask_tokens(rng, ids, attention_mask, *, mask_id: int, vocab_size: int, special_ids, rate: float = 0.15):
    """BERT's masking: -> (masked ids [B, T], chosen [B, T] bool: the positions the MLM loss scores)."""
    pick, how, rand = jax.random.split(rng, 3)
    special = jnp.isin(ids, jnp.asarray(special_ids))
    chosen = (attention_mask > 0) & ~special & (jax.random.uniform(pick, ids.shape) < rate)
    u = jax.random.uniform(how, ids.shape)
    random_ids = jax.random.randint(rand, ids.shape, 0, vocab_size)
    masked = jnp.where(u < 0.8, mask_id, jnp.where(u < 0.9, random_ids, ids))
    return jnp.where(chosen, masked, ids), chosen


def mismatch_images(rng, images):
    """Half the examples get the next example's image: -> (images, labels [B] int: 1 = mismatched pair)."""
    flip = jax.random.bernoulli(rng, 0.5, images.shape[:1])
    shifted = jnp.roll(images, 1, axis=0)
    return jnp.where(flip[:, None, None, None], shifted, images), flip.astype(jnp.int32)


class VisualBertPretrainTask(Task):
    def __init__(self, config):
        tok = tokenizer_of(config)
        self.mask_id = tok.token_id("[MASK]")
        self.special_ids = tuple(tok.token_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.vocab_size = tok.vocab_size
        super().__init__(config)

    def build_model(self, cfg) -> nn.Module:
        bert = tower_from_config(cfg.text, self.dtype)
        visual = RegionEmbeddings(
            width=bert.width,
            max_length=bert.max_length,
            type_vocab_size=bert.type_vocab_size,
            image_tower=tower_from_config(cfg.image, self.dtype),
            dtype=self.dtype,
        )
        return VisualBertForPreTraining(VisualBertModel(bert, visual))

    def init(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], batch["attention_mask"], pixel_values=batch["image"])["params"]

    def _forward(self, params, batch, rng, train: bool):
        mask_rng, pair_rng, dropout_rng = jax.random.split(rng, 3)
        ids, chosen = mask_tokens(
            mask_rng,
            batch["input_ids"],
            batch["attention_mask"],
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
        )
        images, mismatched = mismatch_images(pair_rng, batch["image"])
        out = self.model.apply(
            {"params": params},
            ids,
            batch["attention_mask"],
            pixel_values=images,
            train=train,
            rngs={"dropout": dropout_rng},
        )
        text_logits = out["prediction_logits"][:, : ids.shape[1]]
        real = batch.get("example_mask", jnp.ones(ids.shape[:1], jnp.int32)) > 0  # eval pads its last batch
        mlm, mlm_metrics = losses.masked_cross_entropy(text_logits, batch["input_ids"], chosen & real[:, None])
        itm, itm_metrics = losses.masked_cross_entropy(out["seq_relationship_logits"], mismatched, real)
        metrics = {"mlm_loss": mlm, "itm_loss": itm, "mlm_accuracy": mlm_metrics["accuracy"]}
        metrics["itm_accuracy"] = itm_metrics["accuracy"]
        return mlm + itm, metrics

    def loss(self, params, batch, rng):
        return self._forward(params, batch, rng, train=True)

    def evaluate(self, params, mesh, split: str | None = None) -> dict[str, Any]:
        # A fixed key: the same masks and image swaps at every evaluation, so numbers are comparable over time.
        step = jax.jit(lambda p, b, i: self._forward(p, b, jax.random.fold_in(jax.random.key(0), i), False)[1])
        totals: dict[str, float] = {}
        batches = 0
        for i, batch in enumerate(self.eval_data(mesh, split)):
            for k, v in to_host(step(params, batch, i)).items():
                totals[k] = totals.get(k, 0.0) + float(v)
            batches += 1
        return {f"pretrain/{k}": v / max(batches, 1) for k, v in totals.items()}
