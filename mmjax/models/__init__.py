"""Complete models: encoders + fusion + heads. Usable without the trainer: init/apply like any Linen module."""

from mmjax.models.bert import BertModel
from mmjax.models.clip import CLIP, l2_normalize

__all__ = ["CLIP", "BertModel", "l2_normalize"]
