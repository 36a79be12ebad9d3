"""How towers meet: dict[str, Encoded] in -> one Encoded out, for every strategy.

`FUSIONS` is the one table that names fusions for configs: build_fusion('mid', fusion_layer=2, num_layers=4).
Every fusion is called as `fusion(encodings, train=False)`; modalities are processed in sorted-key order unless
the fusion's `modalities` field fixes another.
"""

from __future__ import annotations

import flax.linen as nn

from mmjax.fusion.bottleneck import BottleneckFusion
from mmjax.fusion.common import TokenFusion
from mmjax.fusion.early import EarlyFusion
from mmjax.fusion.late import LateFusion, modality_order
from mmjax.fusion.mid import CoAttentionBlock, MidFusion

FUSIONS: dict[str, type[nn.Module]] = {
    "early": EarlyFusion,
    "late": LateFusion,
    "mid": MidFusion,
    "bottleneck": BottleneckFusion,
}


def build_fusion(name: str, **kwargs) -> nn.Module:
    """A fusion module by its table name, e.g. build_fusion('bottleneck', n_bottlenecks=4, num_layers=4)."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; available: {sorted(FUSIONS)}")
    return FUSIONS[name](**kwargs)


__all__ = [
    "FUSIONS",
    "BottleneckFusion",
    "CoAttentionBlock",
    "EarlyFusion",
    "LateFusion",
    "MidFusion",
    "TokenFusion",
    "build_fusion",
    "modality_order",
]
