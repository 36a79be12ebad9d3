"""The standard fusion input: two modalities of different widths, both with padding."""

import pytest
from fusion_testing import make_encodings


@pytest.fixture
def encodings():
    return make_encodings(0)
