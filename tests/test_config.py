"""Config files, overrides and validation: every mistake that needs no compilation fails in one line naming the key."""

import pathlib

import pytest

from mmjax import config as mmconfig
from mmjax.config import schema

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
TINY = f"{CONFIGS}/clip_shapes.py:tiny"
# one per config file; the variants differ only in values (tests/golden pins every variant's model)
SHIPPED = ("clip_shapes.py:tiny", "vqa_shapes.py:tiny,model=fusion,fusion=bottleneck", "caption_shapes.py:tiny")


def _error(fn, *args) -> str:
    with pytest.raises(mmconfig.ConfigError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_tiny_variant_resolves_every_schema_key_and_validates_on_eight_devices():
    config = mmconfig.load_config(TINY)
    assert set(schema.TOP) - {"model"} <= set(config) and "data" in config
    assert config.batch_size == 16 and config.total_steps == 5
    assert config.optim.b1 == 0.9  # a default the file does not state comes from the schema
    mmconfig.validate(config, 8)


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value and not (prefix + key).endswith("data.fields"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _text(value) -> str:
    return value if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("spec", SHIPPED)
def test_every_declared_key_can_be_overridden_from_the_command_line(spec):
    """Each key of the resolved config, set from an --config.k=v string, parses back to its value and type (and
    a changed value takes): no key exists only as a default at a read site."""
    config = mmconfig.load_config(f"{CONFIGS}/{spec}").to_dict()
    leaves = dict(_leaves(config))
    assert len(leaves) > 100
    for key, value in leaves.items():
        got = mmconfig.load_config(f"{CONFIGS}/{spec}", [f"--config.{key}={_text(value)}"])
        node = got
        for part in key.split("."):
            node = node[part]
        node = node.to_dict() if hasattr(node, "to_dict") else node
        assert node == value and type(node) is type(value), (key, value, node)
    changed = {"optim.b2": 0.95, "model.image.dropout_rate": 0.25, "data.read_threads": 3, "log_every": 7}
    got = mmconfig.load_config(f"{CONFIGS}/{spec}", [f"--config.{k}={v}" for k, v in changed.items()])
    assert (got.optim.b2, got.model.image.dropout_rate, got.data.read_threads, got.log_every) == (0.95, 0.25, 3, 7)


def test_overrides_parse_to_the_key_type():
    config = mmconfig.load_config(
        TINY, ["--config.optim.lr=1", "batch_size=32", "optim.rules=[('image_tower/.*', {'freeze': True})]"]
    )
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.batch_size == 32
    assert config.optim.rules == [("image_tower/.*", {"freeze": True})]
    assert mmconfig.load_config(TINY, ["progress=false"]).progress is False
    assert mmconfig.load_config(TINY, ["model.text.mlp_dim=64"]).model.text.mlp_dim == 64  # None default: any value


def test_keys_that_only_existed_as_read_site_defaults_are_overridable():
    config = mmconfig.load_config(
        TINY, ["dcn_mesh={'data': 1}", "model.logit_scale_init=2.5", "model.image.attention_impl=xla"]
    )
    assert config.dcn_mesh.data == 1 and config.model.logit_scale_init == 2.5
    assert config.model.image.attention_impl == "xla"
    vqa = mmconfig.load_config(f"{CONFIGS}/vqa_shapes.py:tiny", ["task=classification", "model.num_classes=7"])
    assert vqa.model.num_classes == 7


def test_unknown_key_names_the_closest_valid_key():
    message = _error(mmconfig.load_config, TINY, ["--config.optim.lrr=1"])
    assert message == "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    assert "'model.text.width'" in _error(mmconfig.load_config, TINY, ["model.text.widht=8"])
    assert "is a group" in _error(mmconfig.load_config, TINY, ["optim=1"])
    assert "tower 'vit' has no such field" in _error(mmconfig.load_config, TINY, ["model.image={'depht': 1}"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.name=adamx", "config key 'optim.name' is 'adamx'; expected one of ['adamw', 'lamb', 'sgd']"),
        ("data.source=nope", "config key 'data.source' is 'nope'; expected one of"),
        ("task=nope", "config key 'task' is 'nope'; expected one of"),
        ("model.image={'name': 'nope'}", "config key 'model.image.name' is 'nope'; expected one of"),
        ("evals.x.type=nope", "config key 'evals.x.type' is 'nope'; expected one of"),
        ("evals.x.split=test", "config key 'evals.x.type' is 'x'; expected one of"),
        ("sharding=tp", "config key 'sharding' is 'tp'"),
        ("model.dtype=fp8", "config key 'model.dtype' is 'fp8'"),
        ("batch_size=abc", "config key 'batch_size' expects int"),
        ("batch_size=1.5", "config key 'batch_size' expects int"),
        ("progress=maybe", "config key 'progress' expects a bool"),
        ("data.image_size=48", "config keys 'data.image_size' (48) and 'model.image.image_size' (32) disagree"),
        ("data.tokenizer.max_length=32", "'data.tokenizer.max_length' (32) exceeds 'model.text.max_length' (16)"),
        ("model.text.vocab_size=100", "'model.text.vocab_size' (100) is smaller than the 49408 ids"),
        ("model.image.variant=X/3", "config key 'model.image.variant': unknown ViT variant 'X/3'"),
        ("evals.retrieval.batch_size=abc", "config key 'evals.retrieval.batch_size' expects int, got 'abc'"),
        ("evals.retrieval.at_end=maybe", "config key 'evals.retrieval.at_end' expects a bool"),
        ("data.limit=abc", "config key 'data.limit' expects int"),
        ("model.image.mlp_dim=abc", "config key 'model.image.mlp_dim' expects int"),
        ("dcn_mesh=abc", "config key 'dcn_mesh' expects dict"),
        ("batch_size=None", "config key 'batch_size' expects int, got None"),
        ("data.fields.x=1", "config key 'data.fields' is a value, not a group"),
    ],
)
def test_a_wrong_value_names_the_key(override, fragment):
    assert fragment in _error(mmconfig.load_config, TINY, [override])


def test_groups_are_set_key_by_key_or_whole_in_any_order():
    vqa = f"{CONFIGS}/vqa_shapes.py:tiny"
    by_key = mmconfig.load_config(vqa, ["model.kind=fusion", "model.fusion.name=mid", "model.fusion.width=32"])
    by_name = mmconfig.load_config(vqa, ["model.kind=fusion", "model.fusion=mid", "model.fusion.width=32"])
    assert by_key.model.fusion.to_dict() == by_name.model.fusion.to_dict()
    from mmjax.fusion import MidFusion

    assert by_key.model.fusion.name == "mid"
    assert by_key.model.fusion.num_layers == MidFusion.__dataclass_fields__["num_layers"].default
    swept = mmconfig.load_config(vqa, ["model.kind=fusion"], {"model.fusion": "late"})
    assert swept.model.fusion.name == "late"
    # a new evaluator: its keys in either order, or whole
    a = mmconfig.load_config(TINY, ["evals.zs.split=test", "evals.zs.type=zeroshot"]).evals.zs
    b = mmconfig.load_config(TINY, ["evals.zs.type=zeroshot", "evals.zs.split=test"]).evals.zs
    c = mmconfig.load_config(TINY, ["evals.zs={'type': 'zeroshot', 'split': 'test'}"]).evals.zs
    assert a.to_dict() == b.to_dict() == c.to_dict() and a.type == "zeroshot" and len(a.templates) > 1


def test_sizes_that_follow_from_others_are_derived_in_one_place():
    config = mmconfig.load_config(TINY)
    assert config.data.image_size == config.model.image.image_size == 32
    assert config.data.tokenizer.max_length == config.model.text.max_length == 16
    assert config.model.text.vocab_size == 49408  # the CLIP tokenizer's
    # the side that is stated wins, the other follows
    assert mmconfig.load_config(TINY, ["model.image.image_size=48"]).data.image_size == 48
    # a longer tokenizer than an unstated text table: the table follows
    longer = mmconfig.load_config(
        TINY, ["model.text={'name': 'clip_text', 'width': 32, 'num_heads': 2}", "data.tokenizer.max_length=90"]
    )
    assert longer.model.text.max_length == 90
    words = mmconfig.load_config(f"{CONFIGS}/caption_shapes.py:tiny")
    assert words.data.image_size == 32 and words.data.tokenizer.max_length == 24
    # a named ViT variant fills the sizes a config does not state
    b16 = mmconfig.load_config(TINY, ["model.image={'name': 'vit', 'variant': 'B/16', 'depth': 2}"])
    assert (b16.model.image.width, b16.model.image.depth, b16.model.image.patch_size) == (768, 2, 16)
    assert b16.data.image_size == 224
    # evaluators: batch and schedule from the run's
    evals = mmconfig.load_config(TINY, ["evals.comp.type=retrieval", "evals.comp.split=compositional"]).evals
    assert (evals.comp.batch_size, evals.comp.every, evals.comp.at_end, evals.comp.prefix) == (16, 5, True, "comp")
    assert evals.retrieval.split == "test" and evals.retrieval.prefix == ""  # the file's evaluator is kept


@pytest.mark.parametrize(
    "overrides, devices, fragment",
    [
        (["mesh.data=3"], 8, "config key 'mesh': mesh {'data': 3, 'fsdp': 1, 'tensor': 1} has 3 devices"),
        (["mesh.data=-1", "mesh.fsdp=3"], 8, "config key 'mesh'"),
        (["batch_size=12"], 8, "config key 'batch_size' (12) must divide over the data axes data x fsdp = 8 x 1"),
        (["mesh.data=2", "mesh.fsdp=4", "batch_size=4"], 8, "config key 'batch_size' (4)"),
        (["optim.grad_accum_steps=4"], 8, "times optim.grad_accum_steps=4"),
        (["model.text.num_heads=3"], 8, "'model.text.width' (32) must be divisible by 'model.text.num_heads' (3)"),
        (["total_steps=-1"], 8, "config key 'total_steps'"),
        (["checkpoint_every=0"], 8, "config key 'checkpoint_every' must be positive, got 0"),
        (["eval_every=-1"], 8, "config key 'eval_every' must be >= 0 (0: never evaluate), got -1"),
        (["evals.retrieval.batch_size=12"], 8, "config key 'evals.retrieval.batch_size' (12) must be positive"),
        (["evals.x.type=vqa"], 1, "config key 'evals.x.type' is 'vqa'; task 'contrastive' supports"),
        (["profile_steps=(1,)"], 1, "config key 'profile_steps'"),
    ],
)
def test_validate_fails_before_compiling_naming_the_key(overrides, devices, fragment):
    config = mmconfig.load_config(TINY, overrides)
    assert fragment in _error(mmconfig.validate, config, devices)


def test_a_frame_vits_patch_tokens_are_checked_before_any_model_is_built():
    av = f"{CONFIGS}/av_shapes.py:tiny"
    for overrides, fragment in (
        (["model.image.tokens=patches"], "'model.image.tokens' is 'patches' but 'model.image.temporal_depth' is 1"),
        (["model.image.tokens=tubelets"], "'model.image.tokens' must be 'frames' or 'patches', got 'tubelets'"),
    ):
        assert fragment in _error(mmconfig.validate, mmconfig.load_config(av, overrides), 1)
    mmconfig.validate(mmconfig.load_config(av, ["model.image.tokens=patches", "model.image.temporal_depth=0"]), 1)


def test_av_late_fusion_multiplies_unless_told_and_combine_belongs_to_it_alone():
    av = f"{CONFIGS}/av_shapes.py:tiny"
    assert mmconfig.load_config(f"{av},fusion=late").model.fusion.combine == "product"
    assert mmconfig.load_config(f"{av},fusion=late,combine=concat").model.fusion.combine == "concat"
    assert "combine=concat is fusion=late's option, got fusion=early" in _error(
        mmconfig.load_config, f"{av},combine=concat"
    )
    assert "combine must be one of" in _error(mmconfig.load_config, f"{av},fusion=late,combine=max")


def test_config_show_prints_every_key_with_its_doc():
    config = mmconfig.load_config(TINY)
    text = mmconfig.render(config, with_docs=True)
    lines = text.splitlines()
    assert len(lines) == len(dict(_leaves(config.to_dict())))
    assert all("  # " in line for line in lines), [line for line in lines if "  # " not in line][:3]
    assert "optim.lr = 0.001" in text and "model.image.patch_size = 8" in text


def test_sweeps_expand_products_and_zips_into_named_points():
    points = mmconfig.expand_sweep(
        [{"product": {"model.loss": ["softmax", "sigmoid"]}}, {"zip": {"optim.lr": [1e-3, 3e-4], "seed": [0, 1]}}]
    )
    assert len(points) == 4
    assert points[1] == {"model.loss": "softmax", "optim.lr": 3e-4, "seed": 1}
    assert mmconfig.point_name(points[1]) == "loss=softmax,lr=0.0003,seed=1"
    assert "equal lengths" in _error(mmconfig.expand_sweep, [{"zip": {"a": [1], "b": [1, 2]}}])


def test_missing_file_and_variant():
    assert "does not exist" in _error(mmconfig.load_config, "configs/nope.py")
    assert "unknown config argument 'huge'" in _error(mmconfig.load_config, TINY.replace(":tiny", ":huge"))


def test_a_causal_text_tower_pools_at_the_word_lists_end_token_and_so_reads_the_whole_caption(caplog):
    import jax
    import numpy as np

    from mmjax.data import tokenizer_from_config
    from mmjax.encoders import build_tower

    spec = f"{CONFIGS}/video_shapes.py:tiny,task=retrieval"
    config = mmconfig.load_config(spec)
    tok = tokenizer_from_config(config.data.tokenizer)
    text = config.model.text.to_dict()
    assert (text["pool"], text["eos_token_id"]) == ("eos", tok.token_id("[EOS]"))
    assert mmconfig.load_config(TINY).model.text.pool == "argmax"  # CLIP's vocabulary: its end token is the highest id
    assert mmconfig.load_config(spec, ["model.text.pool=eos"]).model.text.eos_token_id == text["eos_token_id"]
    tower = build_tower(text.pop("name"), **text)
    # captions that differ only in their last word: 'argmax' pooled at the highest-id word ('top'), before it
    batch = tok(["a red circle at the top left moves left", "a red circle at the top left moves right"])
    params = tower.init(jax.random.key(0), batch["input_ids"], batch["attention_mask"])
    pooled = tower.apply(params, batch["input_ids"], batch["attention_mask"]).pooled
    assert not np.allclose(pooled[0], pooled[1], atol=1e-4)
    # a stated 'argmax' is kept (a run saved before the fix must load as it was trained), with a warning
    with caplog.at_level("WARNING"):
        assert mmconfig.load_config(spec, ["model.text.pool=argmax"]).model.text.pool == "argmax"
    assert "config key 'model.text.pool' is 'argmax', but the 'word' tokenizer ends a text with id 3" in caplog.text
    # naming the end token asks for pooling there; an id outside the vocabulary is refused
    assert mmconfig.load_config(spec, ["model.text.eos_token_id=5"]).model.text.pool == "eos"
    assert "'model.text.eos_token_id' (999) is not an id" in _error(
        mmconfig.load_config, spec, ["model.text.eos_token_id=999"]
    )
