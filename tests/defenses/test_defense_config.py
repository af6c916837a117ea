import json

import pytest

from tfprune_mia.defenses import DEFENSES, AdvOptions, DefenseConfig, DPOptions, MCMIAOptions
from tfprune_mia.errors import ConfigError


def test_registry_lists_every_defense():
    assert set(DEFENSES.names()) == {"none", "ppb", "adv", "dp", "mcmia"}


@pytest.mark.parametrize("make, fragment", [
    (lambda: DefenseConfig("foo"), "unknown defense 'foo'; choose one of"),
    (lambda: DefenseConfig("ppb", -1.0), "defense_arg=-1.0"),
    (lambda: AdvOptions(mode="fast"), "unknown adv_mode"),
    (lambda: AdvOptions(steps=0), "adv_steps=0"),
    (lambda: DPOptions(clip=0.0), "dp_clip=0.0"),
    (lambda: DPOptions(delta=2.0), "dp_delta=2.0"),
    (lambda: DPOptions(target_epsilon=-1.0), "dp_target_epsilon=-1.0"),
    (lambda: DPOptions(optimizer="rmsprop"), "unknown dp_optimizer"),
    (lambda: MCMIAOptions(mode="as_coded"), "use --defense=adv for it"),
    (lambda: DefenseConfig("dp", options=AdvOptions()), "defense dp takes options=DPOptions"),
    (lambda: DefenseConfig("mcmia", options=AdvOptions()), "defense mcmia takes options=MCMIAOptions"),
    (lambda: DefenseConfig("ppb", options=DPOptions()), "defense ppb takes options=NoOptions"),
])
def test_bad_settings_are_one_line_errors(make, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as error:
        make()
    assert "\n" not in str(error.value)


def test_keys_name_what_changes_the_model():
    assert DefenseConfig().key == "none" and not DefenseConfig().enabled
    assert DefenseConfig("adv").key == "adv-proper-k7-4"
    assert DefenseConfig("adv", options=AdvOptions(mode="as_coded")).key == "adv-as_coded-k7-4"
    assert DefenseConfig("dp", 1.5).key == "dp-s1.5-c1-adam"
    assert DefenseConfig("dp", options=DPOptions(target_epsilon=8.0)).key == "dp-eps8-c1-adam"
    assert DefenseConfig("mcmia", options=MCMIAOptions(retrain_game=False)).key == "mcmia-proper-k7-admm-4"
    assert DefenseConfig("adv", 2.0).relevant() != DefenseConfig("adv", 4.0).relevant()
    assert DefenseConfig().relevant() == {"name": "none"}


@pytest.mark.parametrize("config", [DefenseConfig(), DefenseConfig("ppb", 2.5),
                                    DefenseConfig("adv", 1.0, AdvOptions(mode="as_coded", steps=3)),
                                    DefenseConfig("mcmia", options=MCMIAOptions(steps=2, retrain_game=False)),
                                    DefenseConfig("dp", 0.5, DPOptions(clip=2.0, target_epsilon=8.0, delta=1e-5,
                                                                       optimizer="sgd"))],
                         ids=lambda config: config.key)
def test_to_dict_round_trips_through_json(config):
    again = DefenseConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and type(again.options) is type(config.options)


def test_from_dict_reads_the_flat_records_written_before_options():
    flat = {"name": "mcmia", "strength": 2.0, "adv_mode": "proper", "adv_steps": 3, "mcmia_retrain_game": False,
            "dp_clip": 1.0, "dp_target_epsilon": None, "dp_delta": None, "dp_optimizer": "adam"}
    assert DefenseConfig.from_dict(flat) == DefenseConfig("mcmia", 2.0, MCMIAOptions(steps=3, retrain_game=False))
    with pytest.raises(ConfigError, match="DPOptions has no option clipping"):
        DefenseConfig.from_dict({"name": "dp", "strength": 1.0, "options": {"clipping": 2.0}})
