"""THE config schema and everything that turns files and overrides into one resolved, checked config.

    config = load_config("configs/clip_shapes.py:tiny", ["--config.optim.lr=3e-4"])
    validate(config, jax.device_count())
    print(render(config, with_docs=True))       # what `mmjax config show F --docs` prints

`schema.py` declares every key with its default and doc (components declare theirs next to themselves: towers and
fusions by their module fields, tasks by `MODEL_KEYS`, evaluators by `KEYS`, data by `mmjax/data/schema.py`);
`resolve.py` merges stated keys onto it; `derive.py` fills the sizes that follow from others; `validate.py` checks
what needs the device count. Every error is a `ConfigError`: one line naming the key (exit code 2 from the CLI).
"""

from mmjax.config.derive import derive, stated
from mmjax.config.errors import ConfigError
from mmjax.config.load import (
    expand_sweep,
    list_configs,
    load_config,
    load_sweep,
    make_config,
    parse_overrides,
    point_name,
    split_spec,
    stated_keys,
)
from mmjax.config.resolve import all_keys, resolve
from mmjax.config.show import docs, render
from mmjax.config.validate import mesh_sizes, validate

__all__ = [
    "ConfigError",
    "all_keys",
    "derive",
    "docs",
    "expand_sweep",
    "list_configs",
    "load_config",
    "load_sweep",
    "make_config",
    "mesh_sizes",
    "parse_overrides",
    "point_name",
    "render",
    "resolve",
    "split_spec",
    "stated",
    "stated_keys",
    "validate",
]
