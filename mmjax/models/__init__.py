"""Complete models: encoders + fusion + heads. Usable without the trainer: init/apply like any Linen module."""

from mmjax.models.ast import ASTForAudioClassification, ASTModel
from mmjax.models.audiovisual import AudioVisual, SoundLocalizer, time_shifted
from mmjax.models.bert import BertModel
from mmjax.models.captioner import Captioner, beam_search, greedy_decode
from mmjax.models.classifier import Classifier
from mmjax.models.clip import CLIP, l2_normalize
from mmjax.models.heads import HEADS, AnswerHead, ClassificationHead, build_head
from mmjax.models.video_classifier import VideoClassifier
from mmjax.models.visualbert import VisualBertModel, init_text_from_bert, visualbert_from_bert
from mmjax.models.visualbert_heads import (
    VisualBertForClassification,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForVisualReasoning,
)
from mmjax.models.whisper import WhisperEncoderModel

__all__ = [
    "CLIP",
    "ASTForAudioClassification",
    "ASTModel",
    "HEADS",
    "SoundLocalizer",
    "AnswerHead",
    "AudioVisual",
    "BertModel",
    "Captioner",
    "ClassificationHead",
    "Classifier",
    "VideoClassifier",
    "VisualBertForClassification",
    "VisualBertForPreTraining",
    "VisualBertForQuestionAnswering",
    "VisualBertForVisualReasoning",
    "VisualBertModel",
    "WhisperEncoderModel",
    "beam_search",
    "build_head",
    "greedy_decode",
    "init_text_from_bert",
    "l2_normalize",
    "time_shifted",
    "visualbert_from_bert",
]
