"""Early fusion: every modality's tokens in one sequence, through one joint transformer.

Parameter names (stable): `proj_{m}` (only for modalities whose width differs from `width`), `type_embed`
(TypeEmbed [M, width], row i for the i-th modality in order), `joint` (layers.Encoder), `ln_final`, and
`pool_fusion` with pool='modality'. MidFusion(fusion_layer=0) has exactly this tree, so weights move between them.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn

from mmjax.fusion.common import TokenFusion, self_mask, split
from mmjax.layers import Encoded


class EarlyFusion(TokenFusion):
    """dict[str, Encoded] -> Encoded(tokens [B, sum T_m, width], mask [B, sum T_m], pooled).

    The modalities' token sequences (projected to `width` where needed) are concatenated in modality order, a
    learned modality-type embedding is added, and `num_layers` pre-LN blocks attend over the joint sequence
    (padding keys masked), followed by a final LayerNorm.
    """

    @nn.compact
    def __call__(self, encodings: Mapping[str, Encoded], *, train: bool = False) -> Encoded:
        names, tokens, masks, width = self.prepare(encodings)
        x, mask = self.join(names, tokens, masks, width)
        x = self.stack(self.num_layers, width, "joint")(x, self_mask(mask), not train)
        x = self.final_norm("ln_final")(x)
        return self.output(names, split(x, names, {m: tokens[m].shape[1] for m in names}), masks, train=train)
