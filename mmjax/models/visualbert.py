"""VisualBERT (Li et al. 2019): text tokens and visual tokens through one BERT (single stream).

The text side IS encoders.Bert: its embeddings embed the words, its encoder and pooler run on the joint
sequence [text; visual], so any BERT checkpoint mmjax loads initializes it (`visualbert_from_bert`). Visual
tokens come from encoders.RegionEmbeddings (detector regions, or an image tower's tokens in grid mode) and are
normalized by the text embeddings' LayerNorm, as in the original model, where one LayerNorm follows the
concatenation.

Parameter names (stable): `bert` (exactly encoders.Bert's tree: embeddings, encoder, pooler) and `visual`
(encoders.RegionEmbeddings). Argument and output names follow Hugging Face's VisualBertModel. Heads are in
visualbert_heads.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.encoders.regions import RegionEmbeddings
from mmjax.encoders.text import Bert


class VisualBertModel(nn.Module):
    """input_ids [B, T] + visual_embeds [B, R, D_v] (or pixel_values in grid mode) -> dict with

    last_hidden_state [B, T+R, D] (text tokens first), pooler_output [B, D] (tanh dense over the first token;
    when bert.add_pooler), pooled [B, D] (bert.pool's choice), attention_mask [B, T+R] bool (text mask then
    visual mask). Without visual inputs it is BERT on the text alone.
    """

    bert: Bert
    visual: RegionEmbeddings

    def text_embedding_params(self) -> Mapping:
        """The text embeddings' parameters (token_embed, pos_embed, type_embed, ln), unboxed.

        Shared with the visual tokens (LayerNorm, alignment positions) and the tied MLM decoder. Only valid
        after the text embeddings have run in this call (they create the parameters at init).
        """
        return nn.meta.unbox(self.bert.embeddings.variables["params"])

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        visual_embeds=None,
        visual_attention_mask=None,
        visual_token_type_ids=None,
        image_text_alignment=None,
        boxes=None,
        pixel_values=None,
        *,
        train: bool = False,
    ) -> dict:
        bert = self.bert
        if input_ids.ndim != 2:
            raise ValueError(f"VisualBert expects input_ids [B, T], got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > bert.max_length:
            raise ValueError(
                f"{input_ids.shape[1]} text tokens exceed the position table of {bert.max_length} positions"
            )
        mask = jnp.ones(input_ids.shape, bool) if attention_mask is None else attention_mask.astype(bool)
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(mask.shape)} does not match input_ids {input_ids.shape}")
        x = bert.embeddings(input_ids, token_type_ids, position_ids, train=train)
        if visual_embeds is not None or pixel_values is not None:
            params = self.text_embedding_params()
            vis = self.visual(
                visual_embeds,
                visual_attention_mask,
                visual_token_type_ids,
                image_text_alignment,
                boxes,
                pixel_values,
                text_position_table=params["pos_embed"]["embedding"],
                text_length=input_ids.shape[1],
                train=train,
            )
            # One LayerNorm over [text; visual] in the original: LayerNorm is per token, so normalizing the
            # visual tokens with the text embeddings' LayerNorm computes the same thing.
            ln = nn.LayerNorm(bert.layer_norm_eps, dtype=bert.dtype, param_dtype=bert.param_dtype, parent=None)
            v = ln.apply({"params": params["ln"]}, vis.tokens)
            v = nn.Dropout(bert.dropout_rate)(v, deterministic=not train)
            x = jnp.concatenate([x, v.astype(x.dtype)], axis=1)
            mask = jnp.concatenate([mask, vis.mask], axis=1)
        enc = bert.encode_embeddings(x, mask, train=train)
        out = {"last_hidden_state": enc.tokens, "pooled": enc.pooled, "attention_mask": enc.mask}
        if bert.add_pooler:
            out["pooler_output"] = jax.nn.tanh(bert.pooler(enc.tokens[:, 0]))
        return out


def _find_bert_subtree(params: Mapping) -> tuple[str, ...]:
    """Path of the VisualBertModel inside a parameter tree: () for the model, ('visual_bert',) for a head."""
    if "bert" in params and "visual" in params:
        return ()
    if "visual_bert" in params:
        return ("visual_bert",)
    raise ValueError(
        f"not a VisualBERT parameter tree: expected 'bert' and 'visual' or 'visual_bert', got {sorted(params)}"
    )


def init_text_from_bert(variables: Mapping, bert_variables: Mapping, *, copy_visual_embeddings: bool = True) -> dict:
    """Copy a BERT's parameters into a VisualBERT's (model or any head); everything else is kept.

    variables:      {"params": ...} of a VisualBertModel or VisualBertFor* model.
    bert_variables: {"params": {"bert": ...}} of a models.BertModel (e.g. from convert.load_pretrained), or
                    {"params": ...} of a bare encoders.Bert.
    copy_visual_embeddings: also start the visual type and position tables from the text ones (the paper's
                    initialization, Hugging Face's `special_visual_initialize`).
    The two BERTs must have the same configuration (width, depth, vocabulary, scan); a ValueError lists every
    parameter whose shape differs.
    """
    src = nn.meta.unbox(bert_variables["params"])
    src = src["bert"] if "bert" in src else src  # a BertModel's params, or a bare encoders.Bert's
    params = jax.tree.map(lambda x: x, nn.meta.unbox(dict(variables["params"])))  # fresh dicts we may edit
    node = params
    for key in _find_bert_subtree(params):
        node = node[key]
    want = jax.tree_util.tree_flatten_with_path(node["bert"])[0]
    got = jax.tree_util.tree_flatten_with_path(src)[0]
    want_shapes = {jax.tree_util.keystr(p): tuple(jnp.shape(x)) for p, x in want}
    got_shapes = {jax.tree_util.keystr(p): tuple(jnp.shape(x)) for p, x in got}
    if want_shapes != got_shapes:
        diff = sorted(k for k in want_shapes.keys() | got_shapes.keys() if want_shapes.get(k) != got_shapes.get(k))
        detail = [f"{k}: VisualBERT {want_shapes.get(k)}, BERT {got_shapes.get(k)}" for k in diff]
        raise ValueError("BERT parameters do not fit the VisualBERT text side:\n  " + "\n  ".join(detail))
    dtypes = {jax.tree_util.keystr(p): jnp.asarray(x).dtype for p, x in want}
    node["bert"] = jax.tree_util.tree_map_with_path(lambda p, x: jnp.asarray(x, dtypes[jax.tree_util.keystr(p)]), src)
    if copy_visual_embeddings:
        emb = node["bert"]["embeddings"]
        for name in ("type_embed", "pos_embed"):
            table, mine = emb[name]["embedding"], node["visual"][name]["embedding"]
            if table.shape != mine.shape:
                raise ValueError(f"visual {name} is {mine.shape}, text {name} is {table.shape}: cannot copy")
            node["visual"][name] = {"embedding": table}
    return {**variables, "params": params}


def visualbert_from_bert(
    bert_model: nn.Module,
    bert_variables: Mapping,
    *,
    visual_embedding_dim: int | None = None,
    image_tower: nn.Module | None = None,
    image_shape: tuple[int, int, int] | None = None,
    image_tower_variables: Mapping | None = None,
    use_boxes: bool = False,
    copy_visual_embeddings: bool = True,
    head: Callable[[VisualBertModel], nn.Module] | None = None,
    rng: jax.Array | None = None,
) -> tuple[nn.Module, dict]:
    """A VisualBERT whose text side is `bert_model` (a models.BertModel or an encoders.Bert) with its weights.

    Region mode: visual_embedding_dim = D_v of the detector features. Grid mode: image_tower (e.g. a ViT),
    image_shape (H, W, C) of its input, and optionally image_tower_variables (e.g. a pretrained ViT's; else
    the tower is freshly initialized). head: wraps the VisualBertModel into a task model that holds it as
    `visual_bert`, e.g. `functools.partial(VisualBertForQuestionAnswering, num_labels=3129)`. Everything not
    copied is initialized from `rng`. Returns (model, {"params": ...}).
    """
    bert = getattr(bert_model, "bert", bert_model)
    if not isinstance(bert, Bert):
        raise ValueError(f"expected a BertModel or Bert, got {type(bert_model).__name__}")
    bert = bert.clone(parent=None, name=None)
    visual = RegionEmbeddings(
        width=bert.width,
        feature_dim=visual_embedding_dim,
        max_length=bert.max_length,
        type_vocab_size=bert.type_vocab_size,
        use_boxes=use_boxes,
        image_tower=image_tower,
        layer_norm_eps=bert.layer_norm_eps,
        dtype=bert.dtype,
        param_dtype=bert.param_dtype,
    )
    model = VisualBertModel(bert=bert, visual=visual)
    model = model if head is None else head(model)
    inputs = {"input_ids": jnp.zeros((1, 1), jnp.int32)}
    if image_tower is None:
        if visual_embedding_dim is None:
            raise ValueError("region mode needs visual_embedding_dim (the width of the region features)")
        inputs["visual_embeds"] = jnp.zeros((1, 1, visual_embedding_dim), jnp.float32)
    else:
        if image_shape is None:
            raise ValueError("grid mode needs image_shape (H, W, C) to initialize the image tower")
        inputs["pixel_values"] = jnp.zeros((1, *image_shape), jnp.float32)
    if use_boxes:
        if image_tower is not None:
            raise ValueError("use_boxes with an image_tower: build the model yourself (box count = token count)")
        inputs["boxes"] = jnp.zeros((1, 1, 4), jnp.float32)
    # Linen runs an initializer only for parameters that do not exist yet: applying the model with the given
    # weights in a mutable `params` initializes just the rest (and skips compiling the BERT's random init).
    given = {"bert": nn.meta.unbox(dict(bert_variables["params"]).get("bert", bert_variables["params"]))}
    if image_tower_variables is not None:
        given["visual"] = {"image_tower": nn.meta.unbox(image_tower_variables["params"])}
    given = given if head is None else {"visual_bert": given}

    def init(params, key):
        return model.apply({"params": params}, **inputs, rngs={"params": key}, mutable=["params"])[1]

    rng = jax.random.key(0) if rng is None else rng
    variables = {"params": nn.meta.unbox(jax.jit(init)(given, rng)["params"])}
    return model, init_text_from_bert(variables, bert_variables, copy_visual_embeddings=copy_visual_embeddings)
