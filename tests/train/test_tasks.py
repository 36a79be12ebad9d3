"""Every task trains and evaluates through the one loop; the pieces the tasks add behave as documented."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import REPO, tiny_overrides

from mmjax import config as mmconfig
from mmjax import data as mmdata
from mmjax.data.shapes import ANSWERS
from mmjax.encoders.regions import crop_regions
from mmjax.train import tasks
from mmjax.train.checkpoint import Checkpointer
from mmjax.train.inputs import data_config
from mmjax.train.loop import Setup, train
from mmjax.train.tasks import mask_tokens, mismatch_images

CASES = {
    "vqa_visualbert_grid": ("vqa_shapes.py:tiny", "vqa/accuracy"),
    "vqa_visualbert_regions_relations_stage": ("vqa_shapes.py:tiny,visual=regions,stage=relations", "vqa/accuracy"),
    "vqa_fusion_regions_mid": ("vqa_shapes.py:tiny,model=fusion,visual=regions,fusion=mid", "vqa/accuracy"),
    "vqa_easy": ("vqa_easy.py:tiny", "vqa/accuracy/shape"),
    "captioning": ("caption_shapes.py:tiny", "captioning/cider"),
    "video_captioning": ("video_shapes.py:tiny,task=captioning", "captioning/cider"),
    "clip": ("clip_shapes.py:tiny", "retrieval/text_to_image/recall@5"),
    "audio_classification_ast": ("audio_digits.py:tiny", "classification/accuracy"),
    "audio_retrieval_cnn": ("audio_captions.py:tiny,encoder=cnn", "retrieval/text_to_image/recall@5"),
    "audio_transcription_whisper": ("audio_captions.py:tiny,task=transcription,encoder=whisper", "captioning/wer"),
    # the fused label (the sounding shape's size) from a clip and its soundtrack, and from the soundtrack alone (the
    # other fusions are the same classifier with another fusion module: tests/models/test_av_classifier.py builds
    # each, golden pins each; the video alone is the `tower` kind the video cases train)
    **{
        f"av_classification_{v.replace('=', '_')}": (f"av_shapes.py:tiny,{v}", "classification/accuracy")
        for v in ("fusion=bottleneck", "modality=audio")
    },
    "av_correspondence": ("av_shapes.py:tiny,task=correspondence", "correspondence/accuracy/time_shift"),
    "av_localization": ("av_shapes.py:tiny,task=localization", "localization/pointing_accuracy"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_task_trains_and_its_eval_is_independent_of_eval_batching(case, data_dir, tmp_path):
    """Each task trains through the one loop, and the number it writes to eval.json is the one a single unpadded
    batch over the whole split gives: the shared loop's padding, masks and gathering lose and add nothing."""
    spec, key = CASES[case]
    config = mmconfig.load_config(f"{REPO}/configs/{spec}", tiny_overrides(data_dir, "total_steps=2"))
    split = "test" if case == "vqa_easy" else "validation"  # easy-VQA has no validation split
    for entry in config.evals.values():
        entry.batch_size = 6  # every split here has a last batch of padding
        entry.split = split
    result = train(config, str(tmp_path), devices=jax.devices()[:2])
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    written = json.loads((pathlib.Path(tmp_path) / "eval.json").read_text())
    assert written["step"] == 2 and key in written

    setup = Setup(config, jax.devices()[:1])
    size = len(mmdata.open_source(data_config(config), split).data)
    again = {}
    with setup.activations():
        state = Checkpointer(pathlib.Path(tmp_path) / "checkpoints", async_save=False).restore(2, setup.abstract_state)
        for evaluator in setup.evaluators.values():  # each in one batch, no padding
            evaluator.cfg.batch_size = size
            again.update(evaluator.run(state.params, setup.mesh))
    assert key in again
    for k, v in again.items():
        assert v == pytest.approx(written[k], abs=1e-6), (k, v, written[k])


@pytest.mark.parametrize(
    "spec",
    [
        "pretrain_shapes.py:tiny",
        "clip_shapes.py:tiny,siglip",
        "vqa_shapes.py:tiny,text=minilm",
        "video_shapes.py:tiny",
        "video_shapes.py:tiny,task=retrieval",
        "video_shapes.py:tiny,tower=video_resnet",
    ],
)
def test_the_other_shipped_configs_train_and_evaluate_at_tiny_size(spec, data_dir, tmp_path):
    config = mmconfig.load_config(f"{REPO}/configs/{spec}", tiny_overrides(data_dir, "total_steps=2"))
    result = train(config, str(tmp_path), devices=jax.devices()[:1])
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    metrics = {k for k in json.loads((tmp_path / "eval.json").read_text()) if k not in ("step", "history")}
    assert metrics and all(result[f"eval/{k}"] is not None for k in metrics)


def test_video_shapes_trains_on_a_jsonl_folder_of_clips(tmp_path):
    """Your own videos: mp4s named in train/test.jsonl with motion names as labels, prepared once (the corrupt one
    skipped and counted), read into the visual slot as clips, trained and evaluated by the video config as is."""
    from mmjax.data import media
    from mmjax.data import moving_shapes as ms

    folder = tmp_path / "clips"
    folder.mkdir()
    for split, n in (("train", 16), ("test", 4)):
        lines = []
        for i in range(n):
            clip = ms.generate(0, "train" if split == "train" else "test", i, image_size=32, num_frames=10)
            media.write_video(folder / f"{split}{i}.mp4", clip["video"])
            lines.append(
                json.dumps({"video": f"{split}{i}.mp4", "caption": clip["captions"][0], "label": clip["motion"]})
            )
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with open(folder / "train.jsonl", "a") as f:
        f.write(json.dumps({"video": "broken.mp4", "caption": "a red circle", "label": "left"}) + "\n")
    config = mmconfig.load_config(
        f"{REPO}/configs/video_shapes.py:tiny",
        tiny_overrides(str(tmp_path / "tfds"), "data.source=jsonl", f"data.path={folder}", "total_steps=2"),
    )
    result = train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    assert result["skipped_records"] == 1.0
    assert result["eval/classification/accuracy"] is not None
    info = mmdata.dataset_info(data_config(config))
    per_class = {k.rsplit("/", 1)[1] for k in result if k.startswith("eval/classification/accuracy/")}
    assert per_class and per_class <= set(info.classes)  # the test split's motions, by name
    assert set(info.classes) <= set(ms.MOTIONS) and info.sizes == {"train": 16, "test": 4}


def test_classification_task_reads_the_configured_label(data_dir, tmp_path):
    overrides = ["task=classification", "model.head=classification", f"model.num_classes={len(ANSWERS)}"]
    config = mmconfig.load_config(
        f"{REPO}/configs/vqa_shapes.py:tiny,model=fusion,fusion=late",
        tiny_overrides(data_dir, *overrides, "model.label_key=answer", "data.task=vqa", "total_steps=2")
        + ["evals={'classification': {'split': 'test'}}"],
    )
    setup = Setup(config, jax.devices()[:1])
    batch = next(setup.train_data())
    targets = np.asarray(setup.task.targets(batch))
    np.testing.assert_array_equal(targets.argmax(-1), np.asarray(batch["answer"]))  # one-hot of the answer id
    assert targets.shape == (config.batch_size, len(ANSWERS))
    result = train(config, str(tmp_path), devices=jax.devices()[:1])
    assert "eval/classification/accuracy" in result


def test_the_pretrain_evaluator_weighs_every_example_alike():
    """A short last batch must weigh its examples, not count as a whole batch (the old per-batch mean did)."""
    from mmjax.train.evaluate import Pretrain

    out = {  # 3 examples: two from a full batch (hits 1, 1) and one from a padded last batch (hit 0)
        "mlm_loss": np.array([1.0, 1.0, 4.0]),
        "mlm_hits": np.array([2, 2, 0]),
        "mlm_count": np.array([2, 2, 2]),
        "itm_loss": np.array([0.5, 0.5, 2.0]),
        "itm_hits": np.array([True, True, False]),
    }
    metrics = Pretrain.metrics(None, out)
    assert metrics["pretrain/itm_accuracy"] == pytest.approx(2 / 3)  # a per-batch mean would give 0.5
    assert metrics["pretrain/itm_loss"] == pytest.approx(1.0)
    assert metrics["pretrain/mlm_loss"] == pytest.approx(6 / 6)
    assert metrics["pretrain/mlm_accuracy"] == pytest.approx(4 / 6)


def test_the_classification_evaluator_reports_each_named_class():
    """Per true class where the task knows the names (moving_shapes' motions); overall alone where it does not."""
    from types import SimpleNamespace

    from mmjax.train.evaluate import Classification

    out = {"score": np.array([1.0, 0.0, 1.0, 1.0]), "label": np.array([0, 0, 1, 1])}
    named = SimpleNamespace(task=SimpleNamespace(class_names=lambda: ("left", "right")))
    assert Classification.metrics(named, out) == {
        "classification/accuracy": 0.75,
        "classification/accuracy/left": 0.5,
        "classification/accuracy/right": 1.0,
    }
    unnamed = SimpleNamespace(task=SimpleNamespace(class_names=lambda: ()))
    assert Classification.metrics(unnamed, out) == {"classification/accuracy": 0.75}


def test_mask_tokens_follows_bert_rates_and_spares_special_tokens():
    ids = jnp.tile(jnp.arange(10, 74), (64, 1)).at[:, 0].set(1).at[:, -8:].set(0)  # [CLS]=1 ... [PAD]=0
    mask = (ids != 0).astype(jnp.int32)
    masked, chosen = mask_tokens(jax.random.key(0), ids, mask, mask_id=5, vocab_size=100, special_ids=(0, 1))
    chosen = np.asarray(chosen)
    assert not chosen[:, 0].any() and not chosen[:, -8:].any()  # special and padding never chosen
    assert 0.13 < chosen.sum() / np.asarray(mask[:, 1:]).sum() < 0.17
    replaced = np.asarray(masked)[chosen]
    assert 0.75 < np.mean(replaced == 5) < 0.85
    np.testing.assert_array_equal(np.asarray(masked)[~chosen], np.asarray(ids)[~chosen])


def test_mismatch_images_labels_exactly_the_swapped_pairs():
    images = jnp.arange(8.0)[:, None, None, None] * jnp.ones((8, 2, 2, 3))
    swapped, labels = mismatch_images(jax.random.key(1), images)
    moved = np.asarray(swapped[:, 0, 0, 0]) != np.arange(8)
    np.testing.assert_array_equal(moved, np.asarray(labels).astype(bool))
    assert 0 < int(labels.sum()) < 8


def test_crop_regions_resamples_each_box():
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[0, 4:8, 8:12] = [1.0, 0.5, 0.25]  # a uniform block at x in [0.5, 0.75), y in [0.25, 0.5)
    boxes = jnp.array([[[0.5, 0.25, 0.75, 0.5], [0.0, 0.0, 1.0, 1.0]]])
    crops = np.asarray(crop_regions(jnp.asarray(image), boxes, size=4)).reshape(1, 2, 4, 4, 3)
    np.testing.assert_allclose(crops[0, 0], np.broadcast_to([1.0, 0.5, 0.25], (4, 4, 3)), atol=1e-6)
    np.testing.assert_allclose(crops[0, 1].mean(axis=(0, 1)), image[0].mean(axis=(0, 1)), atol=0.05)


def test_a_text_table_smaller_than_the_tokenizer_fails_naming_both(data_dir):
    with pytest.raises(mmconfig.ConfigError, match=r"'model.text.vocab_size' \(76\) is smaller than the 49408 ids"):
        mmconfig.load_config(
            f"{REPO}/configs/vqa_shapes.py:tiny",
            tiny_overrides(data_dir, "data.tokenizer.kind=clip", "data.tokenizer.path=None"),
        )


def test_a_fusion_tower_that_does_not_fit_the_visual_inputs_fails_naming_both_keys(data_dir):
    config = mmconfig.load_config(
        f"{REPO}/configs/vqa_shapes.py:tiny,model=fusion,visual=regions", tiny_overrides(data_dir, "model.visual=grid")
    )
    with pytest.raises(mmconfig.ConfigError, match=r"'model.image.name' is 'regions' but 'model.visual' is 'grid'"):
        mmconfig.validate(config, 1)


def test_vqa_model_kinds_come_from_one_table():
    assert set(tasks.MODEL_KINDS) == {"visualbert", "fusion", "tower", "av", "audio"}
    assert set(tasks.VQATask.MODEL_KEYS["kind"][2]) == set(tasks.MODEL_KINDS)


def test_an_evaluator_runs_on_its_schedule_and_also_at_the_end():
    from types import SimpleNamespace

    from mmjax.train.evaluate import Evaluator

    def due(every, at_end, total=10):
        e = Evaluator.__new__(Evaluator)
        e.cfg = SimpleNamespace(every=every, at_end=at_end)
        return [s for s in range(1, total + 1) if e.due(s, total)]

    assert due(4, True) == [4, 8, 10]
    assert due(4, False) == [4, 8]
    assert due(5, False) == [5, 10]  # on schedule at the last step: at_end=False does not cancel it
    assert due(0, True) == [10] and due(0, False) == []
