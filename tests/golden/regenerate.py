"""Rewrite tests/golden/configs.json from the current code: `make golden` (or `python tests/golden/regenerate.py`).

Run it only when a change to a model, its parameters, their sharding or its FLOPs is intended, and review the
diff of configs.json. `python tests/golden/regenerate.py SPEC...` rewrites only those configs (golden_testing.SPECS).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # conftest imports its neighbour fast_xla, as pytest makes possible
# The test's environment exactly (8 fake CPU devices, the fast-compile XLA flags): set before JAX is imported.
_conftest = importlib.util.spec_from_file_location("_tests_conftest", HERE.parent / "conftest.py")
_conftest.loader.exec_module(importlib.util.module_from_spec(_conftest))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))  # the repository's mmjax, even without `pip install -e .`

import golden_testing as gt  # noqa: E402


def main(specs: list[str]) -> None:
    unknown = sorted(set(specs) - set(gt.SPECS))
    if unknown:
        sys.exit(f"not in golden_testing.SPECS: {unknown}")
    old = gt.load_golden()
    new = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for spec in gt.SPECS:
            if specs and spec not in specs:
                if spec in old:
                    new[spec] = old[spec]
                continue
            missing = gt.requirements(spec)
            if missing:
                print(f"SKIPPED {spec}: needs {missing}; kept its old entry", file=sys.stderr)
                if spec in old:
                    new[spec] = old[spec]
                continue
            start = time.perf_counter()
            new[spec] = gt.describe(spec, data_dir)
            changed = "new" if spec not in old else ("changed" if gt.compare(old[spec], new[spec]) else "same")
            print(
                f"{spec}: {new[spec]['num_params']:,} params, {new[spec]['flops_per_example']:,.0f} FLOPs/example, "
                f"{changed} ({time.perf_counter() - start:.1f} s)"
            )
    gt.GOLDEN_FILE.write_text(gt.dump_golden(new))
    print(f"wrote {gt.GOLDEN_FILE}")


if __name__ == "__main__":
    main(sys.argv[1:])
