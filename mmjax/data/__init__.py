"""Data: tokenizers, datasets that build offline, and the grain input pipeline.

    it = build_pipeline(config.data, "train", mesh=mesh)   # DataIterator of dicts of global jax.Arrays
    batch = next(it); state = it.get_state(); it.set_state(state)

Sources (`data.source`): "shapes" (default; generated, no download), "easy_vqa" (pip install easy-vqa),
"fashion_mnist" (apt-get install dataset-fashion-mnist), "jsonl" (your own folder), "tfds" (any dataset
already prepared as array_record under `data.data_dir`).

Batch keys. Every batch: `image` float32 [B,H,W,3] (normalized with `data.mean`/`data.std`), `index` int32 [B]
(record position in its split), `image_id` int32 [B] (same image -> same id; -1 if unknown), `example_mask`
int32 [B] (0 for the padding of a short final eval batch).
  image_text: `input_ids`, `attention_mask` int32 [B,T] (one caption: random when training, else the first);
    with `data.captions="all"`: [B,K,T] plus `caption_mask` int32 [B,K]; `label` int32 [B] (image class, -1).
  vqa: `input_ids`, `attention_mask` [B,T] (the question); `answer` int32 [B] (class id in the answer
    vocabulary the builder records, -1 if outside it); `answer_scores` float32 [B,A] (soft VQA targets);
    `question_type` int32 [B] (id in the builder's question types, -1 if unknown).
  with `data.max_regions=R > 0`: `boxes` float32 [B,R,4] (x0,y0,x1,y1 in [0,1], following crops and flips),
    `box_labels` int32 [B,R] (object class, -1 = padding), `box_mask` int32 [B,R].

Config keys (`pipeline.default_config()` has them all, with defaults):
  source            "shapes" | "easy_vqa" | "fashion_mnist" | "jsonl" | "tfds"
  task              "image_text" | "vqa" (shapes, jsonl and tfds; jsonl detects it when None)
  data_dir          where prepared datasets live (local or gs://); None = TFDS's default
  path              jsonl: the folder; easy_vqa / fashion_mnist: a local copy of their files
  name              tfds: the dataset, e.g. "coco_captions:1.1.0"
  limit             easy_vqa / fashion_mnist: keep the first N records per split
  fields            tfds: canonical field -> record path, e.g. {"captions": "captions/text"}
  answers           VQA answer vocabulary override (needed for tfds VQA)
  shapes            image_size, seed, num_train, num_validation, num_test, num_compositional
  image_size        output side S; mean, std: the model's per-channel statistics
  random_crop       train only, with crop_scale, crop_ratio; flip: train only (off for left/right questions)
  tokenizer         kind ("clip" | "bert"), path (None = vendored CLIP vocabulary), max_length (T)
  captions          "random" | "first" | "all" (eval uses "first" unless "all"); max_captions: K for "all"
  max_regions       R; 0 = no region keys
  holdout_labels    image classes (`label` values) left out of training pipelines; evaluation sees them all
  train_question_types  VQA: train on these question types only (a curriculum stage); evaluation sees them all
  text_overflow     "truncate" | "error" (text longer than T is a bad record)
  max_text_chars    jsonl: longer texts are bad records when preparing
  bad_records       "skip" (skip, count, log) | "fail" (raise naming file:line or dataset/split[index])
  batch_size        global; each of P processes gets batch_size / P
  seed, shuffle     shuffling and augmentation are functions of (seed, epoch, record index)
  num_epochs        training passes; None = forever
  read_threads      threads reading and converting records (32 per task) in each process
  worker_count      worker processes (0 = none), each running the whole per-record and per-batch work
  worker_buffer_size  batches each worker prepares ahead

Splits: shapes has train/validation/test/compositional; easy_vqa and fashion_mnist train/test; jsonl the file
stems (train/val/test). All accept TFDS slicing such as "train[:90%]".
"""

from mmjax.data.errors import BadRecordError
from mmjax.data.pipeline import DataIterator, build_pipeline, default_config
from mmjax.data.sources import make_builder, open_source
from mmjax.data.tokenizers import TextTokenizer, bert_tokenizer, clip_tokenizer, tokenizer_from_config

__all__ = [
    "BadRecordError",
    "DataIterator",
    "TextTokenizer",
    "bert_tokenizer",
    "build_pipeline",
    "clip_tokenizer",
    "default_config",
    "make_builder",
    "open_source",
    "tokenizer_from_config",
]
