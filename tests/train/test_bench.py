"""`mmjax bench` prints its JSON: step time, examples/s and TFLOP/s per device for the CLIP demo config."""

import json

from train_testing import REPO, TINY

from mmjax import cli


def test_bench_prints_step_time_throughput_and_flops(capsys, data_dir):
    args = ["bench", "--config", TINY, "--steps", "2", "--warmup", "1", f"--config.data.data_dir={data_dir}"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_devices"] == 8 and result["batch_size"] == 16
    for key in ("step_time_ms", "examples_per_sec", "tflops_per_device"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert abs(result["examples_per_sec"] * result["step_time_ms"] / 1000 - 16) < 1e-6
    assert result["mfu"] is None  # no known peak for a CPU


def test_bench_times_tasks_whose_loss_reads_targets(capsys, data_dir):
    """A VQA step reads answer_scores and boxes: the benched batch carries every key the loss needs."""
    spec = f"{REPO}/configs/vqa_shapes.py:tiny,visual=regions"
    args = ["bench", "--config", spec, "--steps", "1", "--warmup", "1", f"--config.data.data_dir={data_dir}"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])  # the VQA task opens its dataset first, which may print
    assert result["step_time_ms"] > 0 and result["params"] > 0
