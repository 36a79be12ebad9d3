"""`mmjax bench` prints its JSON: step time, examples/s and TFLOP/s per device for the CLIP demo config."""

import json

from train_testing import TINY

from mmjax import cli


def test_bench_prints_step_time_throughput_and_flops(capsys):
    assert cli.main(["bench", "--config", TINY, "--steps", "2", "--warmup", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_devices"] == 8 and result["batch_size"] == 16
    for key in ("step_time_ms", "examples_per_sec", "tflops_per_device"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert abs(result["examples_per_sec"] * result["step_time_ms"] / 1000 - 16) < 1e-6
    assert result["mfu"] is None  # no known peak for a CPU
