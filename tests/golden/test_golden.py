"""Golden tests: every shipped config's parameters (shapes, logical axes, sharding, freezing) and train-step FLOPs
equal the checked-in tests/golden/configs.json. A refactor that is not meant to change a model must pass them
unchanged; an intended change reruns `make golden` and commits the new configs.json."""

from __future__ import annotations

import pathlib

import pytest
from golden_testing import GOLDEN_FILE, REGENERATE, REPO, SPECS, compare, describe, load_golden, requirements


@pytest.fixture(scope="session")
def golden() -> dict:
    return load_golden()


@pytest.fixture(scope="session")
def golden_data_dir(tmp_path_factory) -> str:
    """The datasets tasks open at set-up (shapes VQA, easy-VQA answer vocabularies), prepared once per session."""
    return str(tmp_path_factory.mktemp("golden_data"))


@pytest.mark.parametrize("spec", SPECS)
def test_config_matches_golden(spec, golden, golden_data_dir):
    if spec not in golden:
        pytest.fail(f"{spec} has no golden numbers in {GOLDEN_FILE.name}; run `{REGENERATE}`")
    missing = requirements(spec)
    if missing:
        pytest.skip(f"{spec} needs the packages {missing}")
    differences = compare(golden[spec], describe(spec, golden_data_dir))
    if differences:
        listed = "\n  ".join(differences)
        pytest.fail(
            f"configs/{spec} differs from {GOLDEN_FILE.relative_to(REPO)}:\n  {listed}\n"
            f"If this change to the model is intended, run `{REGENERATE}` and commit the new {GOLDEN_FILE.name}.",
            pytrace=False,
        )


def test_golden_file_lists_exactly_the_pinned_configs(golden):
    assert list(golden) == list(SPECS), f"{GOLDEN_FILE.name} is stale: run `{REGENERATE}`"


def test_every_config_file_is_pinned():
    files = {p.name for p in (REPO / "configs").glob("*.py")} - {"common.py"}
    pinned = {spec.partition(":")[0] for spec in SPECS}
    assert files <= pinned, f"add these configs to golden_testing.SPECS, then run `{REGENERATE}`: {files - pinned}"
    assert all(pathlib.Path(REPO / "configs" / f).is_file() for f in pinned)
