"""Building blocks shared by every tower. Imports nothing else from mmjax."""

from mmjax.layers.attention import MultiHeadAttention, causal_mask, combine_masks, padding_mask
from mmjax.layers.decoder import Decoder, DecoderAttention, DecoderBlock
from mmjax.layers.embed import (
    PatchEmbed,
    PositionEmbed,
    TokenEmbed,
    TubeletEmbed,
    TypeEmbed,
    interpolate_posemb,
    sincos_1d,
    sincos_2d,
)
from mmjax.layers.encoded import Encoded, masked_mean
from mmjax.layers.pooling import MAPHead
from mmjax.layers.transformer import (
    ACTIVATIONS,
    Block,
    Encoder,
    Mlp,
    dense,
    encoder_like,
    get_activation,
    layer_norm,
)

__all__ = [
    "ACTIVATIONS",
    "Block",
    "Decoder",
    "DecoderAttention",
    "DecoderBlock",
    "Encoded",
    "Encoder",
    "MAPHead",
    "Mlp",
    "MultiHeadAttention",
    "PatchEmbed",
    "PositionEmbed",
    "TokenEmbed",
    "TubeletEmbed",
    "TypeEmbed",
    "causal_mask",
    "combine_masks",
    "dense",
    "encoder_like",
    "get_activation",
    "interpolate_posemb",
    "layer_norm",
    "masked_mean",
    "padding_mask",
    "sincos_1d",
    "sincos_2d",
]
