"""Data: tokenizers, datasets that build offline, and the grain input pipeline.

    it = build_pipeline(config.data, "train", mesh=mesh)   # DataIterator of dicts of global jax.Arrays
    batch = next(it); state = it.get_state(); it.set_state(state)

Sources (`data.source`): "shapes" (default; generated, no download), "easy_vqa" (pip install easy-vqa),
"fashion_mnist" (apt-get install dataset-fashion-mnist), "jsonl" (your own folder of images, videos or sounds:
`mmjax/data/jsonl.py`), "tfds" (any dataset already prepared as array_record under `data.data_dir`).

The global batch sequence is a function of (seed, step) alone, whatever the process, device or worker count:
shuffling, crops, flips and caption choice are decided per global position, and each process reads its own
rows of every global batch (`mmjax/data/pipeline.py` tells how, and what becomes of bad records).

Batch keys. Every batch: `image` float32 [B,H,W,3] (normalized with `data.mean`/`data.std`), `index` int32 [B]
(record position in its split), `image_id` int32 [B] (same image -> same id; -1 if unknown), `example_mask`
int32 [B] (0 for a row holding no record: the padding of the final eval batch, or a bad record skipped in
evaluation; such a row is all zeros, with `index` -1).
  image_text: `input_ids`, `attention_mask` int32 [B,T] (one caption: random when training, else the first);
    with `data.captions="all"`: [B,K,T] plus `caption_mask` int32 [B,K]; `label` int32 [B] (image class, -1).
  vqa: `input_ids`, `attention_mask` [B,T] (the question); `answer` int32 [B] (class id in the answer
    vocabulary the builder records, -1 if outside it); `answer_scores` float32 [B,A] (soft VQA targets);
    `question_type` int32 [B] (id in the builder's question types, -1 if unknown).
  with `data.max_regions=R > 0`: `boxes` float32 [B,R,4] (x0,y0,x1,y1 in [0,1], following crops and flips),
    `box_labels` int32 [B,R] (object class, -1 = padding), `box_mask` int32 [B,R].

Config keys: `mmjax/data/schema.py` declares each with its default and a one-line doc (`default_config()` gives
them all); `mmjax config show F --docs` prints them resolved.

Splits: shapes has train/validation/test/compositional; easy_vqa and fashion_mnist train/test; jsonl the file
stems (train/val/test). All accept TFDS slicing such as "train[:90%]".
"""

from mmjax.data.errors import BadRecordError
from mmjax.data.pipeline import DataIterator, build_pipeline
from mmjax.data.schema import default_config
from mmjax.data.sources import DatasetInfo, available_splits, dataset_info, make_builder, open_source, split_name
from mmjax.data.tokenizers import TextTokenizer, bert_tokenizer, clip_tokenizer, tokenizer_from_config

__all__ = [
    "BadRecordError",
    "DataIterator",
    "DatasetInfo",
    "TextTokenizer",
    "bert_tokenizer",
    "available_splits",
    "build_pipeline",
    "clip_tokenizer",
    "dataset_info",
    "default_config",
    "make_builder",
    "open_source",
    "split_name",
    "tokenizer_from_config",
]
