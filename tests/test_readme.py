"""The README: its Python examples (blocks marked `<!-- readme-test`) must run, and it names only real modalities."""

import pathlib
import re
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCKS = re.findall(r"<!-- readme-test[^>]*-->\s*```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    exec(compile(BLOCKS[index], f"README.md[block {index}]", "exec"), {"__name__": "readme"})


def test_readme_and_package_description_advertise_only_modalities_that_have_an_encoder():
    """The README's opening paragraph and pyproject's description name a modality only once mmjax/encoders has a
    module for it (one file per modality); today that is images and text."""
    description = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["description"]
    intro = README.read_text().split("\n\n")[1]
    for modality in ("audio", "video"):
        if not (REPO / "mmjax" / "encoders" / f"{modality}.py").exists():
            assert modality not in description.lower() and modality not in intro.lower(), modality
