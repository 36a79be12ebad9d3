"""Text tokenizers that turn strings into fixed-length int32 batches, built on the `tokenizers` library.

Two families, each producing exactly what the Hugging Face reference tokenizer produces with
`padding="max_length", truncation=True, max_length=T`:

* CLIP byte-level BPE: `[<|startoftext|>, tokens..., <|endoftext|>, pad...]`, lower-cased, spaces collapsed.
  With no path it reads the vocabulary vendored in `mmjax/data/assets/` (no network, no extra package).
* BERT WordPiece: `[CLS] tokens... [SEP] [PAD]...`, from a `vocab.txt` or a Hugging Face directory.
* Word level: `[BOS] words... [EOS] [PAD]...`, lower-cased, punctuation split off, unknown words -> `[UNK]`; a
  closed vocabulary of a few hundred words (classic captioning setups) makes the output softmax hundreds of
  times smaller than a BPE one. `build_word_vocab` writes one from a corpus; `SHAPES_WORDS` covers `shapes`,
  `MOVING_SHAPES_WORDS` the `moving_shapes` captions.

Every tokenizer returns `{"input_ids": int32 [N, T], "attention_mask": int32 [N, T]}`.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

# Shipped as package data (pyproject), so this works from a wheel as well as from a checkout.
ASSETS_DIR = Path(__file__).parent / "assets"
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
# The vendored file holds more merges than CLIP uses; CLIP keeps the first 49152 - 256 - 2 so that the final
# vocabulary (256 bytes, 256 bytes + "</w>", merges, 2 specials) has exactly 49408 entries.
_CLIP_NUM_MERGES = 49152 - 256 - 2
# CLIP's word splitter: specials, English contractions, letter runs, single digits, other non-space runs.
_CLIP_SPLIT = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` (its post-processor adds start/end tokens) into fixed-length batches.

    Attributes:
      max_length: T, the length of every output row (start and end tokens included).
      pad_id: id written after the end token; `attention_mask` is 0 there.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, max_length: int, pad_id: int):
        if max_length < 2:
            raise ValueError(f"max_length must leave room for the start and end tokens, got {max_length}")
        self.max_length = max_length
        self.pad_id = pad_id
        # Two copies: one truncates like the reference; the other does not, so callers can detect overflow.
        self._full = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._full.no_truncation()
        self._full.no_padding()
        self._fixed = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._fixed.enable_truncation(max_length)
        self._fixed.enable_padding(length=max_length, pad_id=pad_id, pad_token=self._fixed.id_to_token(pad_id))

    @property
    def vocab_size(self) -> int:
        return self._full.get_vocab_size(with_added_tokens=True)

    @property
    def end_id(self) -> int | None:
        """The id that closes every text (CLIP's `<|endoftext|>`, BERT's `[SEP]`, the word lists' `[EOS]`); None when
        the tokenizer adds none. A causal text tower must pool there: only that token has seen the whole text."""
        # a word, not "": the last token must be a special one the template added after it, not a start token
        encoding = self._full.encode("a")
        marks = encoding.special_tokens_mask
        return encoding.ids[-1] if marks and marks[-1] else None

    def __call__(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenizes N strings (or one string: N=1) to int32 `input_ids` and `attention_mask` [N, T]."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            empty = np.zeros((0, self.max_length), np.int32)
            return {"input_ids": empty, "attention_mask": empty.copy()}
        # One text (the per-record case) skips encode_batch's thread pool, which forked grain workers inherit.
        if len(texts) == 1:
            encodings = [self._fixed.encode(texts[0])]
        else:
            encodings = self._fixed.encode_batch(list(texts))
        return {
            "input_ids": np.asarray([e.ids for e in encodings], np.int32),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], np.int32),
        }

    def num_tokens(self, text: str) -> int:
        """Length of `text` untruncated, start and end tokens included (> max_length: it gets cut)."""
        return len(self._full.encode(text).ids)

    def token_id(self, token: str) -> int:
        """The id of a special or vocabulary token, e.g. '[MASK]' or '<|endoftext|>'; KeyError if absent."""
        index = self._full.token_to_id(token)
        if index is None:
            raise KeyError(f"token {token!r} is not in this tokenizer's vocabulary")
        return index

    def decode(self, ids: Sequence[int]) -> str:
        return self._full.decode([int(i) for i in ids], skip_special_tokens=True)

    # `tokenizers.Tokenizer` pickles, but going through JSON keeps grain worker processes independent of it.
    def __getstate__(self):
        return {"json": self._full.to_str(), "max_length": self.max_length, "pad_id": self.pad_id}

    def __setstate__(self, state):
        self.__init__(tokenizers.Tokenizer.from_str(state["json"]), state["max_length"], state["pad_id"])


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table, that byte-level BPE vocabularies use."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    # The vocabulary order is printable bytes first, then the remapped ones: keep that order.
    return {b: table[b] for b in printable} | {b: table[b] for b in range(256) if b not in printable}


def clip_vocab_from_bpe_file(
    path: str | os.PathLike | None = None,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Reads CLIP's `bpe_simple_vocab_16e6.txt(.gz)` into `(vocab, merges)` (vocab.json, merges.txt)."""
    if path is None:
        path = ASSETS_DIR / "bpe_simple_vocab_16e6.txt.gz"
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _CLIP_NUM_MERGES + 1]]  # line 0 is a version header
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [CLIP_BOS, CLIP_EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def _clip_pipeline(vocab: dict[str, int], merges: list[tuple[str, str]]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=CLIP_EOS, end_of_word_suffix="</w>", fuse_unk=False)
    )
    # CLIP cleans text (NFC, whitespace runs -> one space) and lower-cases before splitting into words.
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(tokenizers.Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(tokenizers.Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # Bytes back to text, then the end-of-word marker back to a space ("hello," -> "hello ,", like CLIP).
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tok.add_special_tokens([CLIP_BOS, CLIP_EOS])
    bos, eos = vocab[CLIP_BOS], vocab[CLIP_EOS]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}", special_tokens=[(CLIP_BOS, bos), (CLIP_EOS, eos)]
    )
    return tok


def clip_tokenizer(path: str | os.PathLike | None = None, max_length: int = 77) -> TextTokenizer:
    """CLIP's BPE tokenizer, padded with `<|endoftext|>` like `transformers.CLIPTokenizer`.

    Args:
      path: None for the vendored vocabulary; a `bpe_simple_vocab_16e6.txt(.gz)` file; or a Hugging Face
        directory holding `tokenizer.json` or `vocab.json` + `merges.txt`.
      max_length: T (CLIP uses 77).
    """
    if path is not None and os.path.isdir(path):
        if os.path.exists(os.path.join(path, "tokenizer.json")):
            tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
            return TextTokenizer(tok, max_length, tok.token_to_id(CLIP_EOS))
        with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1:] if line.strip()]
    else:
        vocab, merges = _cached_clip_vocab(None if path is None else str(path))
    return TextTokenizer(_clip_pipeline(vocab, merges), max_length, vocab[CLIP_EOS])


@functools.lru_cache(maxsize=4)
def _cached_clip_vocab(path: str | None):
    # Parsing 49k merges takes ~0.3 s; the pipeline builds one tokenizer per split.
    return clip_vocab_from_bpe_file(path)


def bert_tokenizer(path: str | os.PathLike, max_length: int = 64, lowercase: bool = True) -> TextTokenizer:
    """BERT's WordPiece tokenizer, like `transformers.BertTokenizer(Fast)`.

    Args:
      path: a `vocab.txt`, or a Hugging Face directory (its `tokenizer.json` wins over `vocab.txt`, and then
        `lowercase` is read from it rather than from this argument).
      max_length: T.
      lowercase: uncased models lower-case and strip accents; cased ones do neither.
    """
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "tokenizer.json")):
        tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        return TextTokenizer(tok, max_length, tok.token_to_id("[PAD]"))
    vocab_file = os.path.join(path, "vocab.txt") if os.path.isdir(path) else path
    with open(vocab_file, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f) if line.rstrip("\n")}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return TextTokenizer(tok, max_length, vocab["[PAD]"])


WORD_SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
SHAPES_WORDS = ASSETS_DIR / "shapes_words.txt"  # every word of the shapes captions and questions
MOVING_SHAPES_WORDS = ASSETS_DIR / "moving_shapes_words.txt"  # every word of the moving_shapes captions
# word lists shipped with mmjax, named by data.tokenizer.path (written by build_word_vocab from train and
# validation texts of their world)
VENDORED_WORDS = {"shapes": SHAPES_WORDS, "moving_shapes": MOVING_SHAPES_WORDS}


def _word_normalizer():
    return normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])


def word_tokenizer(path: str | os.PathLike, max_length: int = 64) -> TextTokenizer:
    """A word-level tokenizer over the words in `path` (one per line; `WORD_SPECIALS` first, added if absent)."""
    with open(path, encoding="utf-8") as f:
        words = [line.strip() for line in f if line.strip()]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*WORD_SPECIALS, *words]))}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = _word_normalizer()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # word runs and punctuation runs
    tok.add_special_tokens(list(WORD_SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return TextTokenizer(tok, max_length, vocab["[PAD]"])


def build_word_vocab(texts, path: str | os.PathLike, min_count: int = 1) -> list[str]:
    """Writes the words of `texts` seen at least `min_count` times (most frequent first) for `word_tokenizer`."""
    splitter, normalizer = pre_tokenizers.Whitespace(), _word_normalizer()
    counts: dict[str, int] = {}
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] = counts.get(word, 0) + 1
    words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    Path(path).write_text("\n".join([*WORD_SPECIALS, *words]) + "\n", encoding="utf-8")
    return words


def tokenizer_from_config(config) -> TextTokenizer:
    """Builds the tokenizer that `config.data.tokenizer` describes.

    Keys: `kind` ("clip" | "bert" | "word"), `path` (None = vendored CLIP vocabulary; required for BERT and
    word, whose paths "shapes" and "moving_shapes" name the vendored lists, `VENDORED_WORDS`),
    `max_length` (T), `lowercase` (BERT from a vocab.txt only).
    """
    kind, path, max_length = config["kind"], config["path"], config["max_length"]
    if kind == "clip":
        return clip_tokenizer(path, max_length)
    if kind == "bert":
        if path is None:
            raise ValueError("data.tokenizer.path: a BERT tokenizer needs a vocab.txt or a Hugging Face directory")
        return bert_tokenizer(path, max_length, config["lowercase"])
    if kind == "word":
        if path is None:
            raise ValueError(
                f"data.tokenizer.path: a word tokenizer needs a word list (or one of {list(VENDORED_WORDS)})"
            )
        return word_tokenizer(VENDORED_WORDS.get(path, path), max_length)
    raise ValueError(f"data.tokenizer.kind: unknown tokenizer {kind!r}; expected 'clip', 'bert' or 'word'")
