"""What a run leaves in its workdir (metrics, TensorBoard, eval.json, a profile), `mmjax eval`, `init_from`,
and what a non-finite loss does. Most tests read the one baseline run (conftest.baseline_run)."""

import json
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import BASELINE_STEPS, REPO, TINY, read_metrics, tiny_overrides

from mmjax import cli
from mmjax import config as mmconfig
from mmjax.train import init_from as init_from_lib
from mmjax.train.checkpoint import Checkpointer, NoCheckpoint
from mmjax.train.loop import Setup, train
from mmjax.train.resume import ResumeMismatch

METRIC_KEYS = {"step", "loss", "learning_rate", "grad_norm", "examples_per_sec", "step_time_ms"}
RETRIEVAL_KEYS = {f"retrieval/{d}/recall@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)}


def test_metrics_jsonl_has_one_record_per_logged_step(baseline_run):
    _, workdir, result = baseline_run
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, BASELINE_STEPS + 1))  # log_every=1, first step included
    for r in records:
        assert METRIC_KEYS <= set(r), sorted(r)
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in METRIC_KEYS - {"step"})
    assert records[0]["learning_rate"] == 0.0 and records[1]["learning_rate"] > 0  # one warmup step from 0
    assert result["loss"] == records[-1]["loss"]


def test_tensorboard_events_and_eval_json_and_profile_trace(baseline_run):
    _, workdir, result = baseline_run
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    saved = json.loads((workdir / "eval.json").read_text())
    assert saved["step"] == BASELINE_STEPS
    assert RETRIEVAL_KEYS <= set(saved)
    assert all(0 <= saved[k] <= 1 for k in RETRIEVAL_KEYS)
    assert result[f"eval/{min(RETRIEVAL_KEYS)}"] == saved[min(RETRIEVAL_KEYS)]
    assert list((workdir / "profile").rglob("*.xplane.pb")), "profile_steps wrote no trace"
    assert Checkpointer(workdir / "checkpoints", async_save=False).latest_step() == BASELINE_STEPS


def test_mmjax_eval_reruns_eval_from_the_checkpoint(baseline_run, data_dir, capsys):
    _, workdir, _ = baseline_run
    trained = json.loads((workdir / "eval.json").read_text())
    (workdir / "eval.json").unlink()
    # All 8 devices here, one when trained: the checkpoint is read into the current mesh.
    overrides = [f"--config.{o}" for o in tiny_overrides(data_dir)]
    assert cli.main(["eval", "--config", TINY, "--workdir", str(workdir), *overrides]) == 0
    printed = json.loads(capsys.readouterr().out)
    again = json.loads((workdir / "eval.json").read_text())
    assert again["step"] == BASELINE_STEPS
    for key in RETRIEVAL_KEYS:
        assert again[key] == pytest.approx(trained[key], abs=1e-6)
        assert printed[key] == again[key]


def test_mmjax_eval_without_the_checkpoint_is_one_line_before_anything_is_built(
    baseline_run, data_dir, tmp_path, capsys
):
    _, workdir, _ = baseline_run
    overrides = [f"--config.{o}" for o in tiny_overrides(data_dir)]
    empty = tmp_path / "never_trained"
    assert cli.main(["eval", "--config", TINY, "--workdir", str(empty), *overrides]) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"mmjax: error: no checkpoint in {empty}/checkpoints; train first\n")
    assert not empty.exists()  # refused before the run was set up: nothing written
    assert cli.main(["eval", "--config", TINY, "--workdir", str(workdir), "--step", "999", *overrides]) == 1
    err = capsys.readouterr().err
    assert re.search(
        rf"mmjax: error: no checkpoint of step 999 in {workdir}/checkpoints \(there: (\d+, )*{BASELINE_STEPS}\)", err
    )


def test_a_script_finds_its_evaluator_and_reads_a_checkpoint_without_writing(baseline_run, tiny_config, tmp_path):
    """What the scripts that study a run build on (experiments/demo_report.py and the other reports)."""
    config, workdir, _ = baseline_run
    setup = Setup(config, jax.devices()[:1])
    assert setup.evaluator("retrieval").cfg.type == "retrieval"
    with pytest.raises(mmconfig.ConfigError, match=r"config.evals: no evaluator of type 'captioning' \(there: \["):
        setup.evaluator("captioning")
    files = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    step, params = setup.restore_params(workdir)
    assert step == BASELINE_STEPS
    saved = Checkpointer(workdir / "checkpoints", async_save=False).restore_params()
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, saved)
    assert setup.restore_params(workdir, BASELINE_STEPS)[0] == BASELINE_STEPS
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == files  # a reader writes nothing

    never = tmp_path / "never_trained"
    with pytest.raises(NoCheckpoint, match=f"no checkpoint in {never}/checkpoints; train first"):
        setup.restore_params(never)
    assert not never.exists()
    with pytest.raises(NoCheckpoint, match=rf"no checkpoint of step 999 in .* \(there: (\d+, )*{BASELINE_STEPS}\)"):
        setup.restore_params(workdir, 999)
    # another model: the changed key named, not a read failure that looks like a damaged checkpoint
    wider = Setup(tiny_config("model.embed_dim=24"), jax.devices()[:1])
    with pytest.raises(ResumeMismatch, match=r"does not fit this config .*model.embed_dim \(16 -> 24\).*mmjax eval"):
        wider.restore_params(workdir)


def test_init_from_another_run_copies_params_and_a_mismatch_lists_problems(baseline_run, tiny_config):
    _, workdir, _ = baseline_run
    config = tiny_config("init_from.kind=mmjax", f"init_from.path={workdir}")
    state = Setup(config, jax.devices()[:1]).init_state()
    source = Checkpointer(workdir / "checkpoints", async_save=False).restore_params()
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state.params, source)

    whole_model = init_from_lib.load_source(config.init_from)
    with pytest.raises(ValueError, match="does not fit target 'text_tower'") as e:
        init_from_lib.merge(state.params, whole_model, "text_tower")
    assert "missing " in str(e.value) and "unexpected image_tower/" in str(e.value)


def test_init_from_several_subtrees_pairs_sources_with_targets_in_order(baseline_run, tiny_config):
    """Both towers of a run (as an audio-visual model takes a correspondence run's), the rest freshly initialized."""
    _, workdir, _ = baseline_run
    source = Checkpointer(workdir / "checkpoints", async_save=False).restore_params()
    stated = ["init_from.kind=mmjax", f"init_from.path={workdir}"]
    pair = ["init_from.source=image_tower, text_tower", "init_from.target=image_tower,text_tower"]
    state = Setup(tiny_config(*stated, *pair), jax.devices()[:1]).init_state()
    for tower in ("image_tower", "text_tower"):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                     state.params[tower], source[tower])  # fmt: skip
    assert not np.array_equal(state.params["image_projection"]["kernel"], source["image_projection"]["kernel"])
    with pytest.raises(ValueError, match=r"init_from.source names 2 subtrees and init_from.target 1"):
        Setup(tiny_config(*stated, pair[0], "init_from.target=image_tower"), jax.devices()[:1])


def test_nonfinite_loss_stops_the_run_naming_the_step_or_is_skipped(tiny_config, tmp_path):
    overrides = ("optim.lr=1e30", "total_steps=4", "eval_every=100", "checkpoint_every=100")
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step (\d+)") as e:
        train(tiny_config(*overrides), str(tmp_path / "error"), devices=jax.devices()[:1])
    bad_step = int(re.search(r"at step (\d+)", str(e.value)).group(1))
    logged = read_metrics(tmp_path / "error")
    assert [r["step"] for r in logged] == list(range(1, bad_step)), "every earlier step was logged"
    assert all(math.isfinite(r["loss"]) for r in logged)

    result = train(tiny_config(*overrides, "on_nonfinite=skip"), str(tmp_path / "skip"), devices=jax.devices()[:1])
    records = read_metrics(tmp_path / "skip")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    skipped = [r["step"] for r in records if r["skipped_updates"]]
    assert skipped and skipped[0] == bad_step
    assert all(r["loss"] == "nan" or not math.isfinite(float(r["loss"])) for r in records if r["step"] in skipped)
    assert result["skipped_updates"] == 1.0


def test_logged_step_time_includes_the_computation_not_just_its_dispatch(tmp_path):
    """Steps are dispatched asynchronously: the logged time must cover their execution, not only the dispatch."""
    import time

    import jax.numpy as jnp
    import ml_collections

    from mmjax.train.loop import _Loop
    from mmjax.train.metrics import MetricWriter

    slow = jax.jit(lambda x: jax.lax.fori_loop(0, 8, lambda i, y: jnp.tanh(y @ x), x).sum())
    x = jnp.ones((768, 768)) / 768
    slow(x).block_until_ready()  # compiled
    t0 = time.perf_counter()
    slow(x).block_until_ready()
    blocking = time.perf_counter() - t0

    from types import SimpleNamespace

    from mmjax.data import DatasetInfo

    loop = _Loop.__new__(_Loop)
    loop.config = ml_collections.ConfigDict({"batch_size": 1})
    loop.writer = MetricWriter(tmp_path, enabled=False)
    loop.setup = SimpleNamespace(info=DatasetInfo(splits=()))
    loop.flops, loop.peak, loop.last = None, None, {}
    start = time.perf_counter()
    metrics = {"loss": slow(x), "nonfinite": jnp.zeros((), jnp.int32)}  # returns before the work is done
    loop.log([(1, metrics)], start, train_it=SimpleNamespace(num_skipped=0))
    assert loop.last["step_time_ms"] >= 0.5 * 1000 * blocking


def test_sweep_trains_every_point_into_its_own_workdir_and_tabulates(tmp_path, data_dir):
    from mmjax.train.sweep import run_sweep

    spec = tmp_path / "seeds.py"
    spec.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'configs')!r})\nimport clip_shapes\n\n"
        "def get_config(arg=None):\n    return clip_shapes.get_config(arg)\n\n"
        "def get_sweep(arg=None):\n    return [{'zip': {'seed': [0, 1]}}]\n"
    )
    runs = tmp_path / "runs"
    overrides = [f"--config.{o}" for o in tiny_overrides(data_dir, "total_steps=2")]
    rows = run_sweep(f"{spec}:tiny", str(runs), overrides, devices=jax.devices()[:1])
    assert [r["point"] for r in rows] == ["seed=0", "seed=1"]
    assert rows[0]["loss"] != rows[1]["loss"]  # each point really ran with its own seed
    assert all((runs / name / "eval.json").exists() for name in ("seed=0", "seed=1"))
    table = (runs / "results.md").read_text()
    assert "| seed=1 |" in table and "eval/retrieval/text_to_image/recall@1" in table and "params" in table


def test_a_preempted_sweep_point_stops_the_sweep(tmp_path, monkeypatch):
    """SIGTERM during a point saves that point and ends the sweep, instead of starting the next point (which the
    scheduler would kill anyway, losing its first steps); rerunning the sweep resumes the stopped point."""
    from mmjax.train import loop, sweep

    trained = []

    def fake_train(config, workdir, devices=None):
        trained.append(pathlib.Path(workdir).name)
        return {"loss": 1.0, "params": 1, "preempted": len(trained) == 1}

    monkeypatch.setattr(loop, "train", fake_train)
    spec = tmp_path / "seeds.py"
    spec.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'configs')!r})\nimport clip_shapes\n\n"
        "def get_config(arg=None):\n    return clip_shapes.get_config(arg)\n\n"
        "def get_sweep(arg=None):\n    return [{'zip': {'seed': [0, 1, 2]}}]\n"
    )
    assert sweep.run_sweep(f"{spec}:tiny", str(tmp_path / "runs"), []) == []
    assert trained == ["seed=0"]
    assert not (tmp_path / "runs" / "results.md").exists()
    rows = sweep.run_sweep(f"{spec}:tiny", str(tmp_path / "runs"), [])
    assert trained == ["seed=0", "seed=0", "seed=1", "seed=2"] and [r["point"] for r in rows] == [
        "seed=0",
        "seed=1",
        "seed=2",
    ]


def test_a_sweep_into_a_gs_workdir_keeps_the_url_and_writes_its_table_through_epath(tmp_path, monkeypatch):
    """pathlib.Path("gs://bucket/sweep") is the LOCAL path "gs:/bucket/sweep": each point's workdir and the results
    table must go through epath. gs:// is redirected to tmp_path/gcs here (epath's mock backend), so no network."""
    import importlib.util

    from etils.epath import testing as epath_testing

    from mmjax.train import loop, sweep

    if importlib.util.find_spec("tensorflow"):  # epath then sends gs:// to tf.io.gfile, which the mock cannot reach
        pytest.skip("TensorFlow installed: epath's mock backend does not cover gs://")
    workdirs = []

    def fake_train(config, workdir, devices=None):
        workdirs.append(workdir)
        return {"loss": 1.0, "params": 1, "preempted": False}

    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.chdir(tmp_path)  # where a pathlib-made "gs:/bucket/sweep" would land
    gcs = tmp_path / "gcs"
    local = lambda path: str(path).replace("gs://", f"{gcs}/", 1)
    spec = tmp_path / "seeds.py"
    spec.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'configs')!r})\nimport clip_shapes\n\n"
        "def get_config(arg=None):\n    return clip_shapes.get_config(arg)\n\n"
        "def get_sweep(arg=None):\n    return [{'zip': {'seed': [0, 1]}}]\n"
    )
    with epath_testing.mock_epath(
        open=lambda fn, path, mode: fn(local(path), mode),
        exists=lambda fn, path: fn(local(path)),
        mkdir=lambda fn, path, exist_ok: fn(local(path), exist_ok=exist_ok),
        makedirs=lambda fn, path, exist_ok: fn(local(path), exist_ok=exist_ok),
    ):
        rows = sweep.run_sweep(f"{spec}:tiny", "gs://bucket/sweep", [])
    assert workdirs == ["gs://bucket/sweep/seed=0", "gs://bucket/sweep/seed=1"]
    assert json.loads((gcs / "bucket/sweep/results.json").read_text()) == rows
    assert "| seed=1 |" in (gcs / "bucket/sweep/results.md").read_text()
    assert not (tmp_path / "gs:").exists()


def test_bfloat16_compute_trains_float32_master_weights(tmp_path, data_dir):
    from mmjax import config as mmconfig
    from mmjax.train.loop import train

    config = mmconfig.load_config(TINY, tiny_overrides(data_dir, "total_steps=2", "model.dtype=bfloat16"))
    result = train(config, str(tmp_path), devices=jax.devices()[:1])
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    params = Checkpointer(tmp_path / "checkpoints", async_save=False).restore_params()
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype("float32")}


def test_two_evaluators_on_two_splits_on_their_own_schedules(tiny_config, tmp_path):
    """big_vision's config.evals: retrieval on `test` every 2 steps, zero-shot-style retrieval on `compositional`
    only at the end; both land in eval.json, each under its own names and steps."""
    evals = {
        "retrieval": {"split": "test", "every": 2},
        "compositional": {"type": "retrieval", "split": "compositional", "every": 0, "at_end": True},
    }
    config = tiny_config("total_steps=4", "eval_every=0", f"evals={evals!r}")
    train(config, str(tmp_path), devices=jax.devices()[:1])
    saved = json.loads((tmp_path / "eval.json").read_text())
    history = saved["history"]
    assert sorted(history, key=int) == ["2", "4"]
    assert "retrieval/text_to_image/recall@1" in history["2"]
    assert not any(k.startswith("compositional/") for k in history["2"])  # not due at step 2
    assert {"retrieval/text_to_image/recall@1", "compositional/retrieval/text_to_image/recall@1"} <= set(history["4"])
    assert (
        saved["compositional/retrieval/image_to_text/recall@5"]
        == history["4"]["compositional/retrieval/image_to_text/recall@5"]
    )


def test_records_skipped_while_preparing_are_counted_in_the_run_metrics(tiny_config, tmp_path):
    """Bad lines of your own JSONL are skipped when the folder is prepared; the run still reports them."""
    from PIL import Image

    folder = tmp_path / "mine"
    folder.mkdir()
    for split, n in (("train", 16), ("test", 4)):
        lines = []
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"{split}{i}.png")
            lines.append(json.dumps({"image": f"{split}{i}.png", "caption": f"picture {i}"}))
        if split == "train":
            lines += [json.dumps({"image": "nowhere.png", "caption": "x"}), "{not json", json.dumps({"image": "a"})]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    config = tiny_config(
        "data.source=jsonl", f"data.path={folder}", f"data.data_dir={tmp_path / 'tfds'}", "total_steps=1",
        "evals.retrieval.batch_size=4",
    )  # fmt: skip
    result = train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
    assert result["skipped_records"] == 3.0


def test_mmjax_eval_needs_only_the_workdir(baseline_run, data_dir, capsys):
    """The checkpoint holds the config it was trained with: `mmjax eval --workdir D` needs nothing else."""
    _, workdir, _ = baseline_run
    trained = json.loads((workdir / "eval.json").read_text())
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "compositional"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["compositional/retrieval/text_to_image/recall@1"] >= 0.0
    again = json.loads((workdir / "eval.json").read_text())
    assert again[min(RETRIEVAL_KEYS)] == trained[min(RETRIEVAL_KEYS)], "the trained split's numbers stay"
    assert cli.main(["eval", "--workdir", str(workdir / "nowhere")]) == 1
    assert capsys.readouterr().err.strip().endswith("train first, or give --config")


def test_init_from_inflates_an_image_run_into_a_video_tower(baseline_run, data_dir):
    """The image tower of a CLIP run starts a video_vit (`init_from.adapt`), as video models start from image ones;
    a tower the adaptation cannot make fails at set-up in one line."""
    from mmjax.encoders import inflate_vit
    from mmjax.train.tasks import tower_from_config

    _, workdir, _ = baseline_run
    spec = f"{REPO}/configs/video_shapes.py:tiny,tower=video_vit"
    stated = ["init_from.kind=mmjax", f"init_from.path={workdir}", "init_from.source=image_tower"]
    stated += ["init_from.target=towers_image", "init_from.adapt=inflate_central", "model.image.pre_norm=True"]
    config = mmconfig.load_config(spec, tiny_overrides(data_dir, *stated))
    state = Setup(config, jax.devices()[:1]).init_state()
    image = Checkpointer(workdir / "checkpoints", async_save=False).restore_params()["image_tower"]
    want = inflate_vit(image, tower_from_config(config.model.image, jnp.float32), method="central")
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state.params["towers_image"], want
    )

    frames = mmconfig.load_config(f"{REPO}/configs/video_shapes.py:tiny", tiny_overrides(data_dir, *stated))
    with pytest.raises(mmconfig.ConfigError, match="inflates into a video_vit tower, not FrameViT"):
        Setup(frames, jax.devices()[:1])
