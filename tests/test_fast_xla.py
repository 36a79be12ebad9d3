"""The test set-up: the fast-compile XLA flags are defined in one place (tests/fast_xla.py) and reach pytest."""

import os
import pathlib

from fast_xla import FAST_XLA_FLAGS

TESTS = pathlib.Path(__file__).resolve().parent


def test_the_fast_xla_flags_are_defined_once_and_set_for_the_pytest_process():
    assert FAST_XLA_FLAGS in os.environ["XLA_FLAGS"]
    flag = FAST_XLA_FLAGS.split()[0]  # not written out here, or this file would define it too
    defining = sorted(p.relative_to(TESTS).as_posix() for p in TESTS.rglob("*.py") if flag in p.read_text())
    assert defining == ["fast_xla.py"]
