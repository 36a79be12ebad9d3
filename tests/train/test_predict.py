"""`mmjax.predict`: a trained run applied to image files gives what evaluation computes; `mmjax predict` prints
the same numbers; mistakes are one line and exit 2. Runs are the tiny configs trained for 2 steps."""

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from train_testing import REPO

from mmjax import cli
from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax import eval as mmeval
from mmjax.data.preprocess import ImagePreprocessor, decode_image
from mmjax.predict import PredictError, Predictor
from mmjax.train.checkpoint import Checkpointer
from mmjax.train.evaluate import predict_split
from mmjax.train.inputs import data_config
from mmjax.train.loop import Setup, train

CLASSES = ["red circle", "blue square", "green triangle", "yellow cross"]
NUM_IMAGES = 5
NO_EVALS = ("eval_every=0",)  # the tests evaluate themselves; the run only needs its checkpoint


# The README's "Using a trained model" example, run as is (in a folder holding runs/demo and pngs/).
def _readme_snippet() -> str:
    """The README's five-line predict example (the block after `<!-- predict-example -->`), run as written."""
    readme = (REPO / "README.md").read_text()
    return re.search(r"<!-- predict-example -->\s*```python\n(.*?)```", readme, flags=re.S).group(1)


def _train(config, workdir) -> None:
    train(config, str(workdir), devices=jax.devices()[:1])


def _pngs(config, split: str, folder: pathlib.Path, n: int = NUM_IMAGES) -> list[pathlib.Path]:
    """The first `n` images of `split` written as PNG files (lossless: the pixels the pipeline reads)."""
    folder.mkdir(exist_ok=True)
    source = mmdata.open_source(config.data, split)
    paths = []
    for i in range(n):
        path = folder / f"scene{i}.png"
        Image.fromarray(decode_image(source.data[i]["image"])).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def clip_run(tiny_config, tmp_path_factory):
    """(config, workdir, PNGs of the first test images) of the tiny CLIP config trained 2 steps."""
    config = tiny_config("total_steps=2", *NO_EVALS)
    workdir = tmp_path_factory.mktemp("predict_clip")
    _train(config, workdir)
    return config, workdir, _pngs(config, "test", tmp_path_factory.mktemp("pngs"))


def _evaluation(config, workdir, classes):
    """What `mmjax eval` computes for the test split with a zero-shot evaluator over `classes`: (params, the
    pipeline's image batch, image embeddings, class embeddings, logit scale)."""
    stated = json.dumps(list(classes))
    eval_config = mmconfig.make_config(
        config.to_dict(), ["evals.zs.type=zeroshot", "evals.zs.split=test", f"evals.zs.classes={stated}"]
    )
    setup = Setup(eval_config, jax.devices()[:1])
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
    _, state = ckpt.restore_newest(setup.abstract_state)
    ckpt.close()
    zs, task = setup.evaluators["zs"], setup.task

    def encode_text(texts):
        tokens = task.tokenizer(texts)
        return zs.encode_text(state.params, tokens["input_ids"], tokens["attention_mask"])

    prompts = mmeval.encode_class_prompts(encode_text, zs.classes, tuple(zs.cfg.templates), batch_size=256)
    images = predict_split(zs.jitted_predict, state.params, zs.batches(setup.mesh))["image"]
    batch = next(iter(zs.batches(setup.mesh)))
    scale, _ = task.model.apply({"params": state.params}, method="temperature")
    return state.params, np.asarray(batch["image"]), images, np.asarray(mmeval.class_embeddings(prompts)), scale


def test_zero_shot_on_png_files_is_what_evaluation_computes(clip_run):
    config, workdir, pngs = clip_run
    before = sorted((str(p), p.stat().st_mtime_ns) for p in pathlib.Path(workdir).rglob("*"))
    predictor = Predictor.from_workdir(workdir)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in pathlib.Path(workdir).rglob("*")) == before, "only read"
    assert predictor.step == 2 and predictor.kind == "contrastive"
    assert predictor.config.to_dict() == config.to_dict(), "the run's config, rebuilt from the checkpoint alone"
    params, pixels, image_embeds, class_embeds, scale = _evaluation(config, workdir, CLASSES)

    chex_equal = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), predictor.params, params)
    assert all(jax.tree.leaves(chex_equal)), "the same parameters as evaluation restores"
    np.testing.assert_array_equal(predictor.model_inputs(pngs), pixels[:NUM_IMAGES])  # bit for bit
    np.testing.assert_allclose(predictor.embed_images(pngs), image_embeds[:NUM_IMAGES], atol=1e-5)
    np.testing.assert_allclose(predictor.class_embeddings(CLASSES), class_embeds, atol=1e-5)

    probs = predictor.zero_shot(pngs, CLASSES)
    assert probs.shape == (NUM_IMAGES, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    expected = jax.nn.softmax(scale * image_embeds[:NUM_IMAGES] @ class_embeds.T, axis=-1)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # a folder, arrays (uint8 and float in [0, 1]) and PIL images are the same images
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in pngs]
    np.testing.assert_array_equal(predictor.zero_shot(pngs[0].parent, CLASSES), probs)
    np.testing.assert_array_equal(predictor.zero_shot(np.stack(arrays), CLASSES), probs)
    np.testing.assert_array_equal(predictor.zero_shot([a / 255.0 for a in arrays], CLASSES), probs)
    np.testing.assert_array_equal(predictor.zero_shot([Image.open(p) for p in pngs], CLASSES), probs)


def test_rankings_both_ways(clip_run):
    _, workdir, pngs = clip_run
    predictor = Predictor.from_workdir(workdir)
    images, texts = predictor.embed_images(pngs), predictor.embed_texts(["a red circle", "a blue square"])
    by_text = predictor.rank_images("a blue square", pngs)
    np.testing.assert_allclose(by_text.scores, images @ texts[1], atol=1e-6)
    assert list(by_text.order) == list(np.argsort(-by_text.scores, kind="stable"))
    np.testing.assert_allclose(by_text.probs.sum(), 1.0, atol=1e-6)
    by_image = predictor.rank_texts(pngs[2], ["a red circle", "a blue square"])
    np.testing.assert_allclose(by_image.scores, texts @ images[2], atol=1e-6)
    with pytest.raises(PredictError, match="cannot answer questions"):
        predictor.answer(pngs[0], "what color is the circle?")


def _main(capsys, *argv):
    code = cli.main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_what_the_python_api_returns(clip_run, tmp_path, capsys):
    _, workdir, pngs = clip_run
    folder, jsonl, png = pngs[0].parent, tmp_path / "out.jsonl", tmp_path / "show.png"
    code, out, _ = _main(
        capsys, "--workdir", workdir, "zeroshot", "--images", folder, "--classes", *CLASSES, "--jsonl", jsonl,
        "--show", png, "--top", 2,
    )  # fmt: skip
    assert code == 0
    probs = Predictor.from_workdir(workdir).zero_shot(pngs, CLASSES)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in pngs], "one line per image, in folder order"
    for record, row in zip(records, probs):
        assert [record["probs"][c] for c in CLASSES] == [float(p) for p in row], "exactly the API's numbers"
        assert [t["class"] for t in record["top"]] == [CLASSES[i] for i in np.argsort(-row, kind="stable")[:2]]
    lines = out.strip().splitlines()
    assert lines[0].split() == ["image", "#1", "#2"] and len(lines) == 1 + NUM_IMAGES
    top = records[0]["top"][0]
    assert lines[1].startswith(str(pngs[0])) and f"{top['class']} {top['prob']:.3f}" in lines[1]
    with Image.open(png) as shown:
        assert shown.format == "PNG" and shown.size[0] > 200

    # the model options may also follow the action; rank writes one line per ranked image
    code, out, _ = _main(capsys, "rank", "--workdir", workdir, "--images", *pngs, "--text", "a red circle",
                         "--jsonl", jsonl)  # fmt: skip
    assert code == 0
    ranking = Predictor.from_workdir(workdir).rank_images("a red circle", pngs)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["image"] for r in records] == [str(pngs[i]) for i in ranking.order]
    assert [r["score"] for r in records] == [float(ranking.scores[i]) for i in ranking.order]
    assert out.splitlines()[0] == "images ranked for 'a red circle'" and len(out.strip().splitlines()) == 2 + NUM_IMAGES


def test_the_readme_snippet_runs(clip_run, tmp_path, monkeypatch, capsys):
    _, workdir, pngs = clip_run
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(workdir)
    (tmp_path / "pngs").symlink_to(pngs[0].parent)
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_snippet(), "README predict example", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [p.name for p in pngs]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["zeroshot", "--images", "{tmp}/nope.png", "--classes", "a"], "nope.png: no such file or folder"),
        (["zeroshot", "--images", "{tmp}/text.png", "--classes", "a"], "text.png: not an image"),
        (["zeroshot", "--images", "{tmp}/empty", "--classes", "a"], "no image files in this folder"),
        (["caption", "--images", "{png}"], "is a 'contrastive' run: it cannot caption images"),
        (["rank", "--images", "{png}"], "rank takes --images ... --text T"),
        (["zeroshot", "--images", "{png}", "--classes", "a", "--templates", "no slot"], "exactly one '{}'"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(clip_run, tmp_path, capsys, args, fragment):
    _, workdir, pngs = clip_run
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty").mkdir()
    code, out, err = _main(capsys, "--workdir", workdir, *[a.format(tmp=tmp_path, png=pngs[0]) for a in args])
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("mmjax: error: "), err
    assert fragment in err and "Traceback" not in err


def test_workdir_mistakes_are_one_line_and_exit_2(clip_run, tmp_path, capsys):
    _, _, pngs = clip_run
    (tmp_path / "empty").mkdir()
    for model, fragment in [
        (["--workdir", tmp_path / "empty"], "no checkpoint in"),
        (["--workdir", tmp_path / "absent"], "no such workdir"),
        ([], "give one of --workdir D"),
        (["--hf", tmp_path / "empty"], "cannot load it"),
    ]:
        code, out, err = _main(capsys, *model, "zeroshot", "--images", pngs[0], "--classes", "a")
        assert code == 2 and not out and err.count("\n") == 1 and fragment in err, err


def test_from_pretrained_hugging_face_clip(tmp_path, clip_run, capsys):
    """A Hugging Face CLIP directory (written by mmjax.save_pretrained: no torch needed) with its own mean/std."""
    from mmjax.convert import hf_clip, save_pretrained

    _, _, pngs = clip_run
    hf_config = {
        "vision_config": {"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64,
                          "num_attention_heads": 2, "patch_size": 8, "image_size": 32},
        "text_config": {"vocab_size": 49408, "hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64,
                        "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 49407},
        "projection_dim": 16,
    }  # fmt: skip
    model = hf_clip.build_model(hf_config, jnp.float32, jnp.float32, {})
    ids = jnp.zeros((1, 16), jnp.int32)
    params = model.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)), ids, jnp.ones_like(ids))["params"]
    save_pretrained(model, {"params": params}, tmp_path / "hf")
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))

    predictor = Predictor.from_pretrained(tmp_path / "hf")
    pixels = ImagePreprocessor(size=32, mean=mean, std=std)
    expected = np.stack([pixels(np.asarray(Image.open(p).convert("RGB")), None) for p in pngs])
    np.testing.assert_array_equal(predictor.model_inputs(pngs), expected)
    np.testing.assert_allclose(
        predictor.embed_images(pngs), model.apply({"params": params}, expected, method="encode_image"), atol=1e-5
    )
    tokens = mmdata.clip_tokenizer(None, 16)(["a red circle"])
    text = model.apply({"params": params}, tokens["input_ids"], tokens["attention_mask"], method="encode_text")
    np.testing.assert_allclose(predictor.embed_texts(["a red circle"]), text, atol=1e-5)
    probs = predictor.zero_shot(pngs, CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)

    code, out, _ = _main(capsys, "--hf", tmp_path / "hf", "zeroshot", "--images", *pngs, "--classes", *CLASSES)
    assert code == 0 and len(out.strip().splitlines()) == 1 + NUM_IMAGES


@pytest.fixture(scope="module")
def vqa_and_caption_runs(data_dir, tmp_path_factory):
    """The tiny VQA and captioning configs, each trained 2 steps: {name: (config, workdir)}."""
    runs = {}
    for name, spec in [("vqa", "vqa_shapes.py:tiny"), ("captioning", "caption_shapes.py:tiny")]:
        config = mmconfig.load_config(
            f"{REPO}/configs/{spec}", [f"data.data_dir={data_dir}", "progress=False", "total_steps=2", *NO_EVALS]
        )
        workdir = tmp_path_factory.mktemp(name)
        _train(config, workdir)
        runs[name] = (config, workdir)
    return runs


def _restored(config, workdir):
    setup = Setup(config, jax.devices()[:1])
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
    _, state = ckpt.restore_newest(setup.abstract_state)
    ckpt.close()
    return setup.task, state.params


def _eval_batch(config, n: int = NUM_IMAGES) -> dict:
    cfg = data_config(config, batch_size=n)
    return next(iter(mmdata.build_pipeline(cfg, "test", train=False)))


def test_answers_are_the_vqa_evaluation_logits(vqa_and_caption_runs, tmp_path):
    config, workdir = vqa_and_caption_runs["vqa"]
    predictor = Predictor.from_workdir(workdir)
    assert predictor.answers == tuple(mmdata.dataset_info(config.data).answers)
    task, params = _restored(config, workdir)
    batch = _eval_batch(config)
    logits = np.asarray(task.logits(params, batch))
    source = mmdata.open_source(config.data, "test")
    questions = [source.data[i]["question"].decode() for i in range(NUM_IMAGES)]
    pngs = _pngs(config, "test", tmp_path / "pngs")
    answers = predictor.answer(pngs, questions, top_k=3)
    squash = jax.nn.sigmoid if config.model.loss == "bce" else lambda x: jax.nn.softmax(x, axis=-1)
    probs = np.asarray(squash(logits))
    for row, top in zip(probs, answers):
        best = np.argsort(-row, kind="stable")[:3]
        assert [a for a, _ in top] == [predictor.answers[i] for i in best]
        np.testing.assert_allclose([p for _, p in top], row[best], atol=1e-5)
    one = predictor.answer(pngs[0], questions[0], top_k=2)
    assert [a for a, _ in one] == [a for a, _ in answers[0][:2]]


def test_captions_are_the_captioning_evaluation_decodes(vqa_and_caption_runs, tmp_path, capsys):
    config, workdir = vqa_and_caption_runs["captioning"]
    predictor = Predictor.from_workdir(workdir)
    task, params = _restored(config, workdir)
    expected = [task.text(ids) for ids in np.asarray(task.generate(params, _eval_batch(config)["image"]))]
    pngs = _pngs(config, "test", tmp_path / "pngs")
    assert predictor.caption(pngs) == expected
    assert predictor.caption(pngs[1]) == expected[1]
    code, out, _ = _main(capsys, "--workdir", workdir, "caption", "--images", pngs[0].parent, "--jsonl", tmp_path / "c")
    assert code == 0 and len(out.strip().splitlines()) == 1 + NUM_IMAGES
    assert [json.loads(line)["caption"] for line in (tmp_path / "c").read_text().splitlines()] == expected


def test_a_vqa_run_without_its_answer_vocabulary_says_so(vqa_and_caption_runs, tmp_path):
    """A copy of a VQA workdir whose saved config points at a dataset that is not there (and states no answers)."""
    import shutil

    config, workdir = vqa_and_caption_runs["vqa"]
    copy = tmp_path / "copy"
    shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
    saved = copy / "checkpoints" / "2" / "config" / "metadata"
    stated = json.loads(saved.read_text())
    stated["data"].update(source="jsonl", path=str(tmp_path), data_dir=str(tmp_path / "tfds"))
    saved.write_text(json.dumps(stated))
    with pytest.raises(PredictError, match="answer vocabulary is recorded by its dataset"):
        Predictor.from_workdir(copy)


def test_a_vqa_run_predicts_without_its_dataset_from_the_recorded_dataset_info(vqa_and_caption_runs, tmp_path):
    """The trainer writes workdir/dataset_info.json (the answer vocabulary among it): the workdir alone suffices."""
    import shutil

    config, workdir = vqa_and_caption_runs["vqa"]
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    saved = copy / "checkpoints" / "2" / "config" / "metadata"
    stated = json.loads(saved.read_text())
    stated["data"].update(source="jsonl", path=str(tmp_path), data_dir=str(tmp_path / "tfds"))
    saved.write_text(json.dumps(stated))
    answers = json.loads((copy / "dataset_info.json").read_text())["answers"]
    assert len(Predictor.from_workdir(copy).task.info.answers) == len(answers) > 2
