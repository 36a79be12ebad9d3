"""Shared test set-up. Eight fake CPU devices so sharding tests run anywhere; set before JAX is imported."""

import os

from fast_xla import FAST_XLA_FLAGS  # tests/fast_xla.py: fast compiles (see there)

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count=8 {FAST_XLA_FLAGS}"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No test may reach a model hub: everything they load is made locally or shipped by a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# The slowest folders first: CI's two xdist workers take whole files (`--dist loadfile`) in collection order, so
# long files collected last leave one worker finishing alone while the other idles (longest-job-first balancing).
_SLOW_FIRST = ("distributed", "train", "golden")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        parts = item.path.relative_to(item.config.rootpath).parts
        return _SLOW_FIRST.index(parts[1]) if len(parts) > 2 and parts[1] in _SLOW_FIRST else len(_SLOW_FIRST)

    items.sort(key=rank)  # stable: the order inside each group is pytest's
