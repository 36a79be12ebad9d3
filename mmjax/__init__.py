"""mmjax: multimodal models in JAX/Flax.

Modules are plain Linen modules: `model.init(rng, ...)` / `model.apply(variables, ...)` in your own code, with no
framework globals. Pretrained Hugging Face directories load with `mmjax.load_pretrained(path)`.
"""

from mmjax.convert import load_pretrained, save_pretrained
from mmjax.encoders import (
    AST,
    Bert,
    FrameViT,
    ResNet,
    SpectrogramCNN,
    TextTransformer,
    VideoResNet,
    VideoViT,
    ViT,
    WhisperEncoder,
    build_tower,
    inflate_vit,
)
from mmjax.layers import Encoded
from mmjax.models import CLIP, ASTForAudioClassification, ASTModel, BertModel, Captioner, Classifier, VisualBertModel

__version__ = "0.1.0"

__all__ = [
    "AST",
    "CLIP",
    "ASTForAudioClassification",
    "ASTModel",
    "Bert",
    "BertModel",
    "Captioner",
    "Classifier",
    "Encoded",
    "FrameViT",
    "ResNet",
    "SpectrogramCNN",
    "TextTransformer",
    "VideoResNet",
    "VideoViT",
    "ViT",
    "VisualBertModel",
    "WhisperEncoder",
    "__version__",
    "build_tower",
    "inflate_vit",
    "load_pretrained",
    "save_pretrained",
]
