"""VisualBERT pretraining: masked language modelling + sentence-image prediction on image-caption pairs.

Needs a BERT WordPiece tokenizer (data.tokenizer.kind='bert', its [MASK] token). Each step masks 15% of the
real, non-special text tokens (80% -> [MASK], 10% -> a random token, 10% kept) and, for half of the examples,
swaps in another example's image so the model must tell matching from mismatching pairs (label 1 = mismatch,
as Hugging Face's seq_relationship). The visual tokens are model.image's (grid features).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import losses
from mmjax.config.errors import ConfigError
from mmjax.config.schema import Named
from mmjax.encoders import RegionEmbeddings
from mmjax.models import VisualBertForPreTraining, VisualBertModel
from mmjax.train.tasks.base import IMAGE_TOWER, Task, tower_from_config


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
    MODEL_KEYS = {
        "image": IMAGE_TOWER,
        "text": Named("tower", "bert", "the BERT text tower (its vocabulary is the tokenizer's)"),
    }
    DATA_TASK = "image_text"
    DEFAULT_EVALS = {"pretrain": {"type": "pretrain"}}

    @classmethod
    def validate_config(cls, config) -> None:
        if config.data.tokenizer.kind != "bert":
            raise ConfigError(
                f"config key 'data.tokenizer.kind' is {config.data.tokenizer.kind!r}; VisualBERT pretraining masks "
                "with BERT's [MASK] token and needs 'bert'"
            )

    def __init__(self, config, info):
        super().__init__(config, info)
        tok = self.tokenizer
        self.mask_id = tok.token_id("[MASK]")
        self.special_ids = tuple(tok.token_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.vocab_size = tok.vocab_size

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
        """-> (masked ids' chosen positions [B, T], text logits [B, T, V], pair logits [B, 2], mismatched [B])."""
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
        return chosen, out["prediction_logits"][:, : ids.shape[1]], out["seq_relationship_logits"], mismatched

    def loss(self, params, batch, rng):
        chosen, text_logits, pair_logits, mismatched = self._forward(params, batch, rng, train=True)
        real = batch["example_mask"] > 0
        mlm, mlm_metrics = losses.masked_cross_entropy(text_logits, batch["input_ids"], chosen & real[:, None])
        itm, itm_metrics = losses.masked_cross_entropy(pair_logits, mismatched, real)
        metrics = {"mlm_loss": mlm, "itm_loss": itm, "mlm_accuracy": mlm_metrics["accuracy"]}
        metrics["itm_accuracy"] = itm_metrics["accuracy"]
        return mlm + itm, metrics

    def predict_pretrain(self, params, batch) -> dict:
        """Per-example sums the pretrain evaluator averages over the real examples of a split: masked-token loss
        and hits with their count, pair loss and hit. The masks and image swaps are a function of the batch's
        first record index, so every evaluation draws the same ones."""
        rng = jax.random.fold_in(jax.random.key(0), batch["index"][0])
        chosen, text_logits, pair_logits, mismatched = self._forward(params, batch, rng, train=False)
        token_loss = losses.token_cross_entropy(text_logits, batch["input_ids"])
        token_hit = jnp.argmax(text_logits, -1) == batch["input_ids"]
        pair_loss = losses.token_cross_entropy(pair_logits, mismatched)
        return {
            "mlm_loss": jnp.sum(jnp.where(chosen, token_loss, 0.0), -1),
            "mlm_hits": jnp.sum(chosen & token_hit, -1),
            "mlm_count": jnp.sum(chosen, -1),
            "itm_loss": pair_loss,
            "itm_hits": jnp.argmax(pair_logits, -1) == mismatched,
        }
