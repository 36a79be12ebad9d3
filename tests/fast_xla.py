"""The XLA flags of the compile-bound tests, defined once: tests/conftest.py sets them for the pytest process, and
the helpers that start subprocesses (train/train_testing.py, distributed/multiprocess_testing.py) pass them on.

Imported as `fast_xla`: pytest puts tests/ on sys.path when it loads tests/conftest.py (no __init__.py, the default
`prepend` import mode), the same way tests/train/ and tests/distributed/ make their helpers importable.
"""

# The tests are compile-bound (tiny shapes, a few steps each): XLA:CPU's optimization passes cost 3-10x more time
# than they save (test_scan_and_remat_compute_the_same_function: 54 s -> 11 s). The oracle comparisons pass unchanged.
FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
