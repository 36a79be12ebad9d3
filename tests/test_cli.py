"""The `mmjax` command line: config errors exit 2 with one line; `sweep --dry_run` lists the points."""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from mmjax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = f"{REPO}/configs/clip_shapes.py:tiny"


def test_unknown_override_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mmjax", "train", "--config", TINY, "--workdir", str(tmp_path), "--config.optim.lrr=1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "mmjax: config error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    assert not list(tmp_path.iterdir()), "nothing was started"


def test_config_errors_found_by_validation_also_exit_2(tmp_path, capsys):
    argv = ["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--config.mesh.data=3"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config key 'mesh'" in err[0]


def test_sweep_dry_run_lists_every_point(tmp_path, capsys):
    spec = tmp_path / "sweep_config.py"
    spec.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO / "configs")!r})
            from clip_shapes import get_config as clip_config

            def get_config(arg=None):
                return clip_config("tiny")

            def get_sweep(arg=None):
                return [{{"product": {{"model.loss": ["softmax", "sigmoid"], "seed": [0, 1]}}}}]
            """
        )
    )
    argv = ["sweep", "--config", str(spec), "--workdir", str(tmp_path / "runs"), "--dry_run", "--config.total_steps=2"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert names == ["loss=softmax,seed=0", "loss=softmax,seed=1", "loss=sigmoid,seed=0", "loss=sigmoid,seed=1"]
    assert "--config.total_steps=2 --config.model.loss=sigmoid --config.seed=1" in lines[-1]
    assert f"--workdir {tmp_path / 'runs'}/loss=sigmoid,seed=1" in lines[-1]
    assert not (tmp_path / "runs").exists(), "a dry run trains nothing"


def test_sweep_with_a_bad_key_fails_before_training(tmp_path, capsys):
    spec = tmp_path / "bad_sweep.py"
    spec.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'configs')!r})\nfrom clip_shapes import get_config\n\n"
        "def get_sweep(arg=None):\n    return [{'product': {'optim.lrr': [1e-3]}}]\n"
    )
    assert cli.main(["sweep", "--config", f"{spec}:tiny", "--workdir", str(tmp_path / "runs"), "--dry_run"]) == 2
    assert "did you mean 'optim.lr'?" in capsys.readouterr().err


def test_every_usage_line_of_the_module_docstring_parses():
    """cli.py's docstring is the usage summary people copy from: each line, its [optional] parts included, must
    be accepted by the real parser (anything left over may only be --config.key=value overrides)."""
    lines = [line.split("#")[0] for line in cli.__doc__.splitlines() if line.startswith("mmjax ")]
    commands = {"train", "eval", "sweep", "bench", "config", "configs", "convert", "predict"}
    assert {line.split()[1] for line in lines} == commands
    for line in lines:
        argv = re.sub(r"\[(.*?)\]", r"\1", line).replace("...", "").split()[1:]
        known, extra = cli._parser().parse_known_args(argv)
        assert known.command == argv[0] and all(e.startswith("--config.") for e in extra), (line, extra)


def _write_jsonl_folder(root: pathlib.Path) -> pathlib.Path:
    """A bring-your-own folder with only train.jsonl and val.jsonl (and the images they name)."""
    import numpy as np
    from PIL import Image

    root.mkdir()
    for split, n in (("train", 8), ("val", 4)):
        lines = []
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(root / f"{split}{i}.png")
            lines.append(f'{{"image": "{split}{i}.png", "caption": "a picture number {i}"}}')
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_an_eval_split_the_folder_lacks_fails_before_training_naming_the_splits(tmp_path, capsys):
    folder = _write_jsonl_folder(tmp_path / "mine")
    workdir = tmp_path / "w"
    argv = ["train", "--config", TINY, "--workdir", str(workdir), "--config.data.source=jsonl"]
    argv += [f"--config.data.path={folder}", f"--config.data.data_dir={tmp_path / 'tfds'}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "mmjax: config error: config key 'evals.retrieval.split' is 'test', a split the 'jsonl' dataset at "
        f"{folder} does not have; its splits are ['train', 'val']"
    ]
    assert not (tmp_path / "tfds").exists(), "checked before preparing the dataset"
    assert not (workdir / "metrics.jsonl").exists() and not list(workdir.glob("checkpoints/[0-9]*"))


# (override, what the one-line error says, found before the dataset is touched). The others are found once the
# dataset is known (the model's parameters depend on it), still before anything compiles or trains; preparing
# the dataset may print its progress first, so for them the error is the last line.
MISTAKES = [
    ("--config.optim.name=adamx", "'optim.name' is 'adamx'", True),
    ("--config.data.source=nope", "'data.source' is 'nope'", True),
    ("--config.task=nope", "'task' is 'nope'", True),
    ("--config.model.image={'name': 'nope'}", "'model.image.name' is 'nope'", True),
    ("--config.evals.extra.type=nope", "'evals.extra.type' is 'nope'", True),
    ("--config.evals.extra.type=vqa", "task 'contrastive' supports ['retrieval', 'zeroshot']", True),
    ("--config.evals.retrieval.split=nope", "'evals.retrieval.split' is 'nope', a split the 'shapes' dataset", True),
    ("--config.model.image.num_heads=3", "must be divisible by 'model.image.num_heads' (3)", True),
    ("--config.data.image_size=40", "'data.image_size' (40) and 'model.image.image_size' (32) disagree", True),
    ("--config.data.frame_order=shuffle", "'data.frame_order' is 'shuffle' but there are no clips", True),
    ("--config.init_from.kind=nope", "'init_from.kind' is 'nope'", True),
    ("--config.init_from.kind=hf", "config key 'init_from.path' is empty but init_from.kind is 'hf'", True),
    ("--config.optim.rules=[('vision/.*', {'freeze': True})]", "config key 'optim.rules': optim.rules patterns", False),
    ("--config.optim.rules=[('.*', {'frozen': True})]", "config key 'optim.rules': optim.rules setting", False),
    ("--config.evals.zs.type=zeroshot", "config key 'evals.zs.classes' must be set", False),
    ("--config.init_from={'kind': 'hf', 'path': '.', 'target': 'vision'}", "'init_from': init_from.target", False),
]


@pytest.mark.parametrize("override, fragment, before_data", MISTAKES)
def test_every_config_mistake_exits_2_with_one_line_before_any_step(override, fragment, before_data, tmp_path, capsys):
    workdir = tmp_path / "w"
    argv = ["train", "--config", TINY, "--workdir", str(workdir), f"--config.data.data_dir={tmp_path / 'tfds'}"]
    assert cli.main([*argv, override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mmjax: config error: ") and fragment in err[-1], err[-1]
    if before_data:
        assert len(err) == 1 and not (tmp_path / "tfds").exists(), err
    assert not (workdir / "metrics.jsonl").exists() and not list(workdir.glob("checkpoints/[0-9]*"))


def test_config_show_prints_the_resolved_config(capsys):
    assert cli.main(["config", "show", "--config", TINY, "--docs", "--config.optim.lr=0.25"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^optim\.lr = 0\.25 +# peak learning rate$", out, re.M)
    assert re.search(r"^data\.image_size = 32 ", out, re.M)  # derived from the image tower


def test_a_tiny_run_is_quiet_on_the_terminal_and_logs_everything_to_train_log(tmp_path):
    """The header, the progress line, the evaluation and the result; Orbax, TFDS and JAX logs go to train.log."""
    workdir = tmp_path / "w"
    proc = subprocess.run(
        [sys.executable, "-m", "mmjax", "train", "--config", TINY, "--workdir", str(workdir)]
        + [f"--config.data.data_dir={tmp_path / 'tfds'}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).split("\n") if line.strip()]  # \r updates: one line
    assert len(lines) <= 15, "\n".join(lines)
    text = proc.stderr
    assert "mmjax train" in text and "eval at step 5: retrieval/" in text
    assert "Downloading" not in text and "absl" not in text and "INFO" not in text
    log = (workdir / "train.log").read_text()
    assert "CheckpointManager" in log and "INFO" in log  # the libraries' logs are kept, not lost
    assert (
        "--verbosity"
        in subprocess.run(
            [sys.executable, "-m", "mmjax", "train", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
        ).stdout
    )


def test_mmjax_configs_lists_every_config_with_its_variants(capsys):
    assert cli.main(["configs", str(REPO / "configs")]) == 0
    out = capsys.readouterr().out
    files = sorted(p.name for p in (REPO / "configs").glob("*.py") if p.name != "common.py")
    listed = [line.split()[0].rsplit("/", 1)[-1] for line in out.splitlines() if not line.startswith(" ")]
    assert listed == files
    assert out.count("    :tiny") == len(files), "every config says what its tiny variant is"
    assert "    :fusion=early|late|mid|bottleneck" in out


def test_a_script_reports_a_users_mistake_in_one_line_and_lets_a_bug_raise(tmp_path, monkeypatch, capsys):
    """experiments/*.py run their main through `cli.run_script`: the same one-line errors as `mmjax`."""
    from mmjax.config import ConfigError
    from mmjax.train.checkpoint import check_saved

    monkeypatch.setattr(sys, "argv", ["report.py"])

    def bad_key():
        raise ConfigError("config.evals: no evaluator of type 'retrieval' (there: ['classification'])")

    with pytest.raises(SystemExit) as e:
        cli.run_script(bad_key)
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "report.py: config error: config.evals: no evaluator of type 'retrieval' (there: ['classification'])\n"
    )
    with pytest.raises(SystemExit) as e:
        cli.run_script(lambda: check_saved(tmp_path))
    assert e.value.code == 1
    assert capsys.readouterr().err == f"report.py: error: no checkpoint in {tmp_path}/checkpoints; train first\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.run_script(lambda: 1 / 0)
