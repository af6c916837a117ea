"""Every option of every pruner and defense travels from its flag into the config and its cache key.

The bug class this guards against: a caller rebuilt `PruneConfig(pruner, sparsity, schedule)` for a sweep and
silently dropped every other option (`sweep --pruners=admm --admm_iterations=3` ran 10 iterations). Here each
field of each options dataclass gets a non-default flag value, goes through the same flag -> config functions
the binaries use, and must arrive and change the key. A new option without an example below fails the test.
"""
import dataclasses

import pytest
from absl import flags

from tfprune_mia.bin import common
from tfprune_mia.defenses import DEFENSES, DefenseConfig
from tfprune_mia.errors import ConfigError
from tfprune_mia.pruning import PRUNERS, PruneConfig

FLAGS = flags.FLAGS
common.define_experiment_flags()

# A valid non-default command-line value for every option flag.
EXAMPLES = {
    "schedule": "polynomial", "scope": "global", "m_by_n": "2:4",
    "slimming_mode": "one_shot", "slimming_l1": "0.01",
    "admm_iterations": "3", "admm_epochs": "2", "admm_rho": "0.01", "admm_rho_growth": "1.5", "admm_rho_max": "0.5",
    "adv_mode": "as_coded", "adv_steps": "3", "mcmia_retrain_game": False,
    "dp_clip": "2.0", "dp_target_epsilon": "8", "dp_delta": "1e-5", "dp_optimizer": "sgd",
    "dp_scope": "end_to_end",
}
# Options whose only non-default value is refused for that component: the flag must arrive and be refused.
REFUSED = {("mcmia", "adv_mode"): "mcmia runs the proper min-max game"}
SPARSITY = {"m_by_n": 0.5}  # M:N fixes the sparsity at M/N


def option_cases(registry, kind):
    return [pytest.param(name, field, flag, id=f"{kind}:{name}:{flag}")
            for name in registry.names()
            for field, flag in registry.get(name).options_class.flag_names().items()]


@pytest.fixture
def parse():
    def run(*argv):
        FLAGS.unparse_flags()
        FLAGS(["test", *argv])

    yield run
    FLAGS.unparse_flags()


def argument(flag):
    value = EXAMPLES[flag]
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no{flag}"
    return f"--{flag}={value}"


def assert_arrives(options, field, flag):
    value, default = getattr(options, field), getattr(type(options)(), field)
    assert value == FLAGS[flag].value, f"--{flag} did not reach {type(options).__name__}.{field}"
    assert value != default, f"the example of --{flag} is its default; give it another value"


def test_every_option_has_a_defined_flag_and_an_example():
    for registry in (PRUNERS, DEFENSES):
        for name in registry.names():
            for field, flag in registry.get(name).options_class.flag_names().items():
                assert flag in FLAGS, f"{name} option {field}: define the flag --{flag} in bin/common.py"
                assert flag in EXAMPLES, f"{name} option {field}: add a non-default example for --{flag} above"


@pytest.mark.parametrize("pruner, field, flag", option_cases(PRUNERS, "pruner"))
def test_every_pruner_option_reaches_the_config_and_its_key(parse, pruner, field, flag):
    sparsity = SPARSITY.get(flag, 0.7)
    parse()
    default = common.prune_config_from_flags(pruner, sparsity)
    parse(argument(flag))  # --pruner stays at its default: the sweep case, one pruner among many
    config = common.prune_config_from_flags(pruner, sparsity)
    assert_arrives(config.options, field, flag)
    assert config.key != default.key
    assert dataclasses.asdict(config) != dataclasses.asdict(default)
    assert PruneConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("defense, field, flag", option_cases(DEFENSES, "defense"))
def test_every_defense_option_reaches_the_config_and_its_key(parse, defense, field, flag):
    parse(f"--defense={defense}")
    default = common.defense_config_from_flags()
    parse(f"--defense={defense}", argument(flag))
    if (defense, flag) in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[defense, flag]):
            common.defense_config_from_flags()
        return
    config = common.defense_config_from_flags()
    assert_arrives(config.options, field, flag)
    assert config.key != default.key
    assert config.relevant() != default.relevant()
    assert DefenseConfig.from_dict(config.to_dict()) == config


def test_the_tuner_strength_overrides_defense_arg_and_keeps_the_options(parse):
    parse("--defense=adv", "--defense_arg=2", "--adv_steps=3")
    config = common.defense_config_from_flags(strength=0.5)
    assert config.strength == 0.5 and config.options.steps == 3


def test_the_experiment_config_carries_every_option_to_victim_and_shadows(parse):
    parse("--pruner=admm", "--admm_iterations=3", "--shadow_sparsity=0.5", "--defense=mcmia", "--adv_steps=2")
    config = common.experiment_config_from_flags()
    assert config.prune.options.iterations == 3 and config.shadow_prune.options.iterations == 3
    assert config.defense.options.steps == 2


def test_canary_flags_reach_the_experiment_config(parse):
    parse("--canaries=50", "--canary_kind=noise")
    config = common.experiment_config_from_flags()
    assert (config.canaries, config.canary_kind) == (50, "noise")
    parse("--canary_kind=typo")
    with pytest.raises(ConfigError, match="typo"):
        common.experiment_config_from_flags()


@pytest.mark.parametrize("argv, fragment", [
    (["--pruner=l1_filter", "--scope=global"], "--scope is an option of pruner l1_unstructured"),
    (["--slimming_l1=0.01"], "--slimming_l1 is an option of pruner slimming"),
    (["--defense=ppb", "--dp_clip=2"], "--dp_clip is an option of defense dp"),
])
def test_an_option_flag_of_an_unused_component_is_refused(parse, argv, fragment):
    parse(*argv)
    with pytest.raises(ConfigError, match=fragment):
        common.experiment_config_from_flags()


def test_an_option_flag_of_a_shadow_pruner_is_accepted(parse):
    parse("--pruner=l1_filter", "--shadow_pruner=slimming", "--slimming_mode=one_shot")
    assert common.experiment_config_from_flags().shadow_prune.options.mode == "one_shot"


@pytest.mark.parametrize("pruner, field, flag", option_cases(PRUNERS, "sweep"))
def test_every_pruner_option_survives_a_sweep_grid(parse, pruner, field, flag):
    """The sweep binary builds each grid cell with prune_config_from_flags: no option is dropped."""
    from tfprune_mia.bin import sweep  # noqa: F401  (defines --pruners)
    from tfprune_mia.pipeline.config import ExperimentConfig
    from tfprune_mia.pipeline.sweep import sweep_configs

    others = [name for name in ("l1_filter", "l1_unstructured") if name != pruner][:1]
    parse(argument(flag), f"--pruners={pruner},{others[0]}")
    sparsity = SPARSITY.get(flag, 0.7)
    configs = sweep_configs(ExperimentConfig(attacks=("conf",)), [pruner] + others, [sparsity],
                            make_prune=common.prune_config_from_flags)
    (cell,) = [config for config in configs if config.prune.pruner == pruner]
    assert_arrives(cell.prune.options, field, flag)
    assert cell.shadow_prune == cell.prune


def test_the_distribution_flag_reaches_the_experiment_config_and_no_key(parse):
    parse()
    single = common.experiment_config_from_flags()
    parse("--distribution=mirrored")
    mirrored = common.experiment_config_from_flags()
    assert (single.distribution, mirrored.distribution) == ("none", "mirrored")
    assert mirrored.result_key() == single.result_key() and mirrored.original_key() == single.original_key()
    parse("--distribution=tpu")
    with pytest.raises(ConfigError, match="unknown distribution 'tpu'; choose one of: mirrored, multi_worker, none"):
        common.experiment_config_from_flags()
    parse("--distribution=mirrored", "--defense=dp")
    with pytest.raises(ConfigError, match="defense dp cannot train under --distribution=mirrored .*"
                                          "pass --distribution=none"):
        common.experiment_config_from_flags()


def test_stacked_training_reaches_the_config_and_only_then_its_key(parse):
    parse()
    default = common.experiment_config_from_flags()
    parse("--stacked_training=auto")
    stacked = common.experiment_config_from_flags()
    assert (default.stacked_training, stacked.stacked_training) == ("off", "auto")
    # Off (the default) leaves the keys of runs cached before the option existed unchanged.
    assert "stacked_training" not in default.to_dict() and stacked.to_dict()["stacked_training"] == "auto"
    assert default.result_key() != stacked.result_key()
    assert default.original_key() == stacked.original_key() != stacked.original_key(stacked=True)
    assert default.pruned_key(default.prune) != stacked.pruned_key(stacked.prune, stacked=True)
    assert type(stacked).from_dict(stacked.to_dict()) == stacked
