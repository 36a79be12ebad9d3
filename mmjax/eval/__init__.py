"""Evaluations: a model's outputs (arrays, decoded strings) in, a flat dict of named floats out.

Nothing here imports a model or the trainer; the evaluators (`train/evaluate.py`) call these functions with what a
model produced, and the loop writes the result with `write_eval_json`. Retrieval and zero-shot score embeddings
under `jax.jit` in chunks (global, possibly sharded, jax.Arrays or host arrays); VQA and captioning are cheap
host-side Python.

  retrieval_metrics   "retrieval/{text_to_image,image_to_text}/recall@{1,5,10}"
  zeroshot_metrics    "zeroshot/top1", "zeroshot/top5", "zeroshot/mean_per_class_top1", "zeroshot/<subset>/..."
  vqa_metrics         "vqa/accuracy", "vqa/accuracy/<question type>"
  captioning_metrics  "captioning/bleu4", "captioning/cider", "captioning/wer" (word error rate)
  classification_metrics "classification/accuracy", "classification/accuracy/<class name>" (given the names)

Ties in rankings count against the correct item (`mmjax.eval.ranking`).
"""

from mmjax.eval.audiovisual import (
    best_patch_scores,
    correspondence_metrics,
    cosine_scores,
    localization_metrics,
    pointing_hits,
)
from mmjax.eval.captioning import captioning_metrics, cider_d, cider_d_scores, corpus_bleu, tokenize
from mmjax.eval.classification import classification_metrics
from mmjax.eval.ranking import positive_ranks, recall_at_k
from mmjax.eval.results import read_eval_json, write_eval_json
from mmjax.eval.retrieval import retrieval_metrics, retrieval_ranks
from mmjax.eval.vqa import accuracy_by_type, normalize_answer, vqa_metrics, vqa_scores
from mmjax.eval.wer import edit_distance, word_error_rate
from mmjax.eval.zeroshot import (
    DEFAULT_TEMPLATES,
    build_prompts,
    class_embeddings,
    encode_class_prompts,
    per_class_accuracy,
    zeroshot_metrics,
)

__all__ = [
    "best_patch_scores",
    "correspondence_metrics",
    "cosine_scores",
    "localization_metrics",
    "pointing_hits",
    "DEFAULT_TEMPLATES",
    "accuracy_by_type",
    "build_prompts",
    "captioning_metrics",
    "cider_d",
    "cider_d_scores",
    "class_embeddings",
    "classification_metrics",
    "corpus_bleu",
    "encode_class_prompts",
    "normalize_answer",
    "edit_distance",
    "word_error_rate",
    "per_class_accuracy",
    "positive_ranks",
    "read_eval_json",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "tokenize",
    "vqa_metrics",
    "vqa_scores",
    "write_eval_json",
    "zeroshot_metrics",
]
