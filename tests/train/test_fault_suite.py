"""The fault-injection suite (experiments/fault_suite.py), one trial of each kind: SIGKILL at a random moment,
during an asynchronous save and during an evaluation; SIGTERM during an evaluation. Every resumed run must lose at
most checkpoint_every steps and end bit-identical to the uninterrupted run."""

import sys

from train_testing import REPO

sys.path.insert(0, str(REPO / "experiments"))

import fault_suite  # noqa: E402


def test_every_interruption_resumes_bit_identically(tmp_path, data_dir):
    rows = fault_suite.run_suite(tmp_path, fault_suite.KINDS, total=12, every=4, eval_every=6, data_dir=data_dir)
    for row in rows:
        assert row["reached"], row  # the interruption landed where it was aimed
        assert row["resume_exit"] == 0 and not row["traceback_in_resume"], row
        assert 0 <= row["steps_lost"] <= 4, row
        assert row["losses_equal"] and row["params_equal"] and row["eval_equal"], row
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["term-eval"]["interrupted_exit"] == 0, "SIGTERM is a preemption notice: save and exit 0"
    assert by_kind["kill-save"]["interrupted_exit"] == -9
