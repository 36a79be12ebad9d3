"""One file per modality: raw arrays in -> layers.Encoded(tokens [B, T, D], mask [B, T], pooled [B, D]).

`TOWERS` is the one table that names towers for configs: build_tower('vit', variant='B/16', ...).
"""

from __future__ import annotations

import flax.linen as nn

from mmjax.encoders.audio import AST, WhisperEncoder, ast_from_vit
from mmjax.encoders.audio_cnn import SpectrogramCNN
from mmjax.encoders.audio_frontend import (
    AST_FBANK,
    WHISPER_LOG_MEL,
    LogMelConfig,
    ast_features,
    log_mel,
    whisper_features,
)
from mmjax.encoders.frames import FrameViT
from mmjax.encoders.regions import RegionEmbeddings, RegionEncoder
from mmjax.encoders.resnet import RESNET_DEPTHS, ResNet
from mmjax.encoders.text import Bert, BertEmbeddings, TextTransformer
from mmjax.encoders.video import DividedVideoViT, FactorisedVideoViT, VideoViT, inflate_vit
from mmjax.encoders.video_cnn import Conv2Plus1D, VideoResNet, mid_width
from mmjax.encoders.vit import VIT_SIZES, ViT, vit_variant

TOWERS: dict[str, type[nn.Module]] = {
    "vit": ViT,
    "resnet": ResNet,
    "clip_text": TextTransformer,
    "bert": Bert,
    "ast": AST,
    "whisper": WhisperEncoder,
    "spectrogram_cnn": SpectrogramCNN,
    "regions": RegionEncoder,
    "frame_vit": FrameViT,
    "video_vit": VideoViT,
    "video_vit_factorised": FactorisedVideoViT,
    "video_vit_divided": DividedVideoViT,
    "video_resnet": VideoResNet,
}


def build_tower(name: str, **kwargs) -> nn.Module:
    """A tower by its table name; `variant=` expands named sizes for towers that have them (ViT)."""
    if name not in TOWERS:
        raise ValueError(f"unknown tower {name!r}; available: {sorted(TOWERS)}")
    cls = TOWERS[name]
    variant = kwargs.pop("variant", None)
    if variant is not None:
        if not hasattr(cls, "from_variant"):
            raise ValueError(f"tower {name!r} has no named variants (got variant={variant!r})")
        return cls.from_variant(variant, **kwargs)
    return cls(**kwargs)


__all__ = [
    "AST_FBANK",
    "AST",
    "RESNET_DEPTHS",
    "TOWERS",
    "VIT_SIZES",
    "WHISPER_LOG_MEL",
    "Bert",
    "BertEmbeddings",
    "Conv2Plus1D",
    "FrameViT",
    "LogMelConfig",
    "DividedVideoViT",
    "FactorisedVideoViT",
    "RegionEmbeddings",
    "RegionEncoder",
    "ResNet",
    "SpectrogramCNN",
    "TextTransformer",
    "VideoResNet",
    "VideoViT",
    "ViT",
    "ast_features",
    "WhisperEncoder",
    "ast_from_vit",
    "build_tower",
    "log_mel",
    "mid_width",
    "inflate_vit",
    "vit_variant",
    "whisper_features",
]
