"""`Predictor`: a trained model (a workdir's checkpoint, or a Hugging Face CLIP directory) applied to your images.

    p = Predictor.from_workdir("runs/clip")          # or Predictor.from_pretrained("path/to/hf-clip")
    probs = p.zero_shot(["a.png", "b.png"], ["red circle", "blue square"])   # [N, C], rows sum to 1
    p.rank_images("a red circle", "photos/")          # Ranking(order, scores, probs) over the folder's images
    p.rank_texts("a.png", ["a red circle", "a blue square"])
    p.answer("a.png", "what color is the circle?")    # [(answer, probability), ...] best first (VQA runs)
    p.caption("a.png")                                # a string (captioning runs)

Images are paths (PNG, JPEG, ...), folders, PIL images or arrays, preprocessed exactly as evaluation does
(`mmjax/predict/images.py`); the embeddings, logits and captions are those the run's evaluators compute.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mmjax import eval as mmeval
from mmjax.data import TextTokenizer
from mmjax.data.preprocess import ImagePreprocessor
from mmjax.predict import images as imagelib
from mmjax.predict.images import PredictError
from mmjax.predict.loading import hf_clip, load_run

DEFAULT_BATCH_SIZE = 32  # images per forward pass


class Ranking(NamedTuple):
    """Candidates ranked against one query. `order`: candidate indices, best first; `scores`: cosine similarity
    and `probs`: softmax over the candidates of logit_scale * cosine, both in the candidates' own order."""

    order: np.ndarray
    scores: np.ndarray
    probs: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Functions:
    """What the loaded model can do, each a function of (params, ...); None: it cannot."""

    encode_image: Callable | None = None  # (params, images [B,S,S,3]) -> normalized [B, E]
    encode_text: Callable | None = None  # (params, ids [N,T], mask [N,T]) -> normalized [N, E]
    temperature: Callable | None = None  # params -> (scale, bias or None)
    logits: Callable | None = None  # (params, batch) -> answer logits [B, A]
    generate: Callable | None = None  # (params, images) -> token ids [B, T]


class Predictor:
    """A model and its parameters, with the tokenizer and image preprocessing it was trained with.

    Build one with `from_workdir` or `from_pretrained`. Attributes: `params`, `tokenizer`, `preprocessor`,
    `config` (the run's resolved config; None for a Hugging Face directory), `task` (the run's task, or None),
    `step` (the checkpoint's step, or None), `source` (where it was loaded from), `answers` (VQA: the vocabulary).
    """

    def __init__(
        self,
        functions: _Functions,
        params: Any,
        tokenizer: TextTokenizer,
        preprocessor: ImagePreprocessor,
        *,
        source: str,
        kind: str,
        config: ml_collections.ConfigDict | None = None,
        task: Any = None,
        step: int | None = None,
        answers: Sequence[str] = (),
        answer_probs: str = "softmax",
        decode: Callable[[Sequence[int]], str] | None = None,
    ):
        self._fn = functions
        self.params, self.tokenizer, self.preprocessor = params, tokenizer, preprocessor
        self.source, self.kind, self.config, self.task, self.step = source, kind, config, task, step
        self.answers, self.answer_probs, self._decode = tuple(answers), answer_probs, decode
        self._jitted: dict[str, Callable] = {}

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike, step: int | None = None) -> Predictor:
        """The newest intact checkpoint of a training workdir (or `step`), with the config it was saved with.

        Needs only `workdir/checkpoints/<step>/` (state + config, as `mmjax train` writes them): not the config
        file, not the dataset (except for VQA runs, whose answer vocabulary the dataset records, unless the
        config states `data.answers`). Nothing in the workdir is written.
        """
        run = load_run(workdir, step)
        task, kind = run.task, run.config.task

        def temperature(params):
            return task.model.apply({"params": params}, method="temperature")

        functions = _Functions(
            encode_image=getattr(task, "encode_image", None),
            encode_text=getattr(task, "encode_text", None),
            temperature=temperature if kind == "contrastive" else None,
            logits=task.logits if kind == "vqa" and run.config.model.visual == "grid" else None,
            generate=getattr(task, "generate", None),
        )
        return cls(
            functions,
            run.params,
            task.tokenizer,
            imagelib.eval_preprocessor(run.config.data),
            source=f"{os.fspath(workdir)} (step {run.step})",
            kind=kind,
            config=run.config,
            task=task,
            step=run.step,
            answers=task.info.answers,
            answer_probs="sigmoid" if run.config.model.get("loss") == "bce" else "softmax",
            decode=getattr(task, "text", None),
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Predictor:
        """A Hugging Face CLIPModel directory (config.json + safetensors), with its own tokenizer if it has one."""
        model, params, tokenizer, preprocessor = hf_clip(path)
        functions = _Functions(
            encode_image=lambda p, x: model.apply({"params": p}, x, method="encode_image"),
            encode_text=lambda p, ids, mask: model.apply({"params": p}, ids, mask, method="encode_text"),
            temperature=lambda p: model.apply({"params": p}, method="temperature"),
        )
        return cls(functions, params, tokenizer, preprocessor, source=os.fspath(path), kind="contrastive")

    # ---------------------------------------------------------------------------------------------- inputs
    def load_images(self, images) -> tuple[list[str], list[np.ndarray]]:
        """Images (see the module docstring) -> (their names, uint8 RGB arrays as read)."""
        items = imagelib.as_image_list(images)
        if not items:
            raise PredictError("no images given")
        return [imagelib.image_name(x, i) for i, x in enumerate(items)], [imagelib.read_image(x) for x in items]

    def model_inputs(self, images) -> np.ndarray:
        """Images -> float32 [N, S, S, 3]: what the evaluation pipeline feeds the model for them."""
        return imagelib.model_inputs(self.load_images(images)[1], self.preprocessor)

    def _batched(self, name: str, fn: Callable, pixels: np.ndarray, batch_size: int, *extra) -> np.ndarray:
        """fn(params, pixels[i:i+b], *extra[i:i+b]) over batches of `batch_size` (the last one padded, so each
        shape compiles once), concatenated on the host."""
        jitted = self._jitted.setdefault(name, jax.jit(fn))
        n = len(pixels)
        b = max(1, min(batch_size, n))
        outs = []
        for start in range(0, n, b):
            chunk = [a[start : start + b] for a in (pixels, *extra)]
            real = len(chunk[0])
            chunk = [np.concatenate([a, np.zeros((b - real, *a.shape[1:]), a.dtype)]) for a in chunk]
            outs.append(np.asarray(jitted(self.params, *chunk))[:real])
        return np.concatenate(outs)

    def _need(self, what: str, fn, needs: str):
        if fn is None:
            raise PredictError(f"{self.source} is a {self.kind!r} run: it cannot {what} ({needs})")
        return fn

    # ------------------------------------------------------------------------------------------ embeddings
    def embed_images(self, images, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Images -> L2-normalized image embeddings [N, E] (float32), as the retrieval/zero-shot evaluators
        compute them."""
        fn = self._need("embed images", self._fn.encode_image, "that needs a contrastive (CLIP/SigLIP) model")
        return self._batched("encode_image", fn, self.model_inputs(images), batch_size)

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Strings -> L2-normalized text embeddings [N, E] (float32)."""
        fn = self._need("embed texts", self._fn.encode_text, "that needs a contrastive (CLIP/SigLIP) model")
        texts = [texts] if isinstance(texts, str) else list(texts)
        tokens = self.tokenizer(texts)
        jitted = self._jitted.setdefault("encode_text", jax.jit(fn))
        parts = [
            np.asarray(jitted(self.params, tokens["input_ids"][i : i + batch_size],
                              tokens["attention_mask"][i : i + batch_size]))
            for i in range(0, len(texts), batch_size)
        ]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def class_embeddings(self, class_names: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """One classifier vector per class [C, E]: the prompt-averaged, normalized text embeddings of the CLIP
        recipe (`mmjax.eval.zeroshot`), as the zero-shot evaluator builds them."""
        if not class_names:
            raise PredictError("no class names given")
        templates = tuple(templates or mmeval.DEFAULT_TEMPLATES)
        try:
            prompts = mmeval.encode_class_prompts(self.embed_texts, list(class_names), templates, batch_size=256)
        except ValueError as e:  # a template without exactly one "{}"
            raise PredictError(str(e)) from None
        return np.asarray(mmeval.class_embeddings(prompts))

    def logit_scale(self) -> float:
        """exp(logit_scale), clamped as in training: the inverse temperature of the similarity logits."""
        fn = self._need("score image-text pairs", self._fn.temperature, "that needs a contrastive model")
        return float(fn(self.params)[0])

    # --------------------------------------------------------------------------------------------- predict
    def zero_shot(
        self, images, class_names: Sequence[str], templates: Sequence[str] | None = None, *, batch_size=32
    ) -> np.ndarray:
        """Zero-shot classification: probabilities [N, C] (each row sums to 1) of each image over `class_names`.

        The CLIP recipe: every class name in every template (default `mmjax.eval.DEFAULT_TEMPLATES`), prompt
        embeddings normalized, averaged and normalized again; softmax over classes of logit_scale * cosine. (A
        SigLIP model is trained with sigmoids and a bias; the softmax ranks its classes the same way.)
        """
        classes = self.class_embeddings(class_names, templates)
        return _softmax(self.logit_scale() * (self.embed_images(images, batch_size=batch_size) @ classes.T))

    def rank_images(self, text: str, images, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Ranking:
        """Text -> image retrieval: the images ranked for `text`."""
        scores = self.embed_images(images, batch_size=batch_size) @ self.embed_texts([text])[0]
        return _ranking(scores, self.logit_scale())

    def rank_texts(self, image, texts: Sequence[str]) -> Ranking:
        """Image -> text retrieval: `texts` ranked for one image."""
        if not imagelib.is_one_image(image):
            raise PredictError("rank_texts takes one image")
        if not texts:
            raise PredictError("no texts given")
        scores = self.embed_texts(list(texts)) @ self.embed_images(image)[0]
        return _ranking(scores, self.logit_scale())

    def answer(self, image, question, *, top_k: int = 5, batch_size: int = DEFAULT_BATCH_SIZE):
        """VQA: the `top_k` answers [(answer, probability), ...], best first, to `question` about `image`.

        Probabilities are a softmax over the answer vocabulary, or independent sigmoids for runs trained with
        model.loss='bce' (VQA soft scores). Lists of images (and one question, or one per image) give a list of
        such lists.
        """
        fn = self._need("answer questions", self._fn.logits, "that needs a VQA run whose model reads the image pixels")
        one = imagelib.is_one_image(image)
        pixels = self.model_inputs(image)
        questions = [question] * len(pixels) if isinstance(question, str) else list(question)
        if len(questions) != len(pixels):
            raise PredictError(f"{len(pixels)} images but {len(questions)} questions")
        tokens = self.tokenizer(questions)

        def logits(params, image, ids, mask):
            return fn(params, {"image": image, "input_ids": ids, "attention_mask": mask})

        out = self._batched("logits", logits, pixels, batch_size, tokens["input_ids"], tokens["attention_mask"])
        probs = jax.nn.sigmoid(out) if self.answer_probs == "sigmoid" else _softmax(out)
        probs = np.asarray(probs, np.float64)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]
        result = [[(self.answers[i], float(p[i])) for i in row] for row, p in zip(top, probs)]
        return result[0] if one else result

    def caption(self, images, *, batch_size: int = DEFAULT_BATCH_SIZE):
        """Greedy captions, as the captioning evaluator decodes them: a string for one image, else a list."""
        fn = self._need("caption images", self._fn.generate, "that needs a captioning run")
        ids = self._batched("generate", fn, self.model_inputs(images), batch_size)
        captions = [self._decode(row) for row in ids]
        return captions[0] if imagelib.is_one_image(images) else captions

    def __repr__(self) -> str:
        return f"Predictor({self.kind}, {self.source})"


def _softmax(logits) -> np.ndarray:
    return np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))


def _ranking(scores: np.ndarray, scale: float) -> Ranking:
    scores = np.asarray(scores, np.float32)
    return Ranking(order=np.argsort(-scores, kind="stable"), scores=scores, probs=_softmax(scale * scores))
