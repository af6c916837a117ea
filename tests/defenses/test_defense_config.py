import pytest

from tfprune_mia.defenses import DEFENSES, DefenseConfig
from tfprune_mia.errors import ConfigError


def test_registry_lists_every_defense():
    assert set(DEFENSES.names()) == {"none", "ppb", "adv", "dp", "mcmia"}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(name="foo"), "unknown defense 'foo'; choose one of"),
    (dict(name="ppb", strength=-1.0), "defense_arg=-1.0"),
    (dict(name="adv", adv_mode="fast"), "unknown adv_mode"),
    (dict(name="adv", adv_steps=0), "adv_steps=0"),
    (dict(name="dp", dp_clip=0.0), "dp_clip=0.0"),
    (dict(name="dp", dp_delta=2.0), "dp_delta=2.0"),
    (dict(name="dp", dp_target_epsilon=-1.0), "dp_target_epsilon=-1.0"),
    (dict(name="dp", dp_optimizer="rmsprop"), "unknown dp_optimizer"),
])
def test_bad_settings_are_one_line_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as error:
        DefenseConfig(**kwargs)
    assert "\n" not in str(error.value)


def test_keys_name_what_changes_the_model():
    assert DefenseConfig().key == "none" and not DefenseConfig().enabled
    assert DefenseConfig("adv").key == "adv-proper-k7-4"
    assert DefenseConfig("adv", adv_mode="as_coded").key == "adv-as_coded-k7-4"
    assert DefenseConfig("dp", 1.5).key == "dp-s1.5-c1-adam"
    assert DefenseConfig("dp", dp_target_epsilon=8.0).key == "dp-eps8-c1-adam"
    assert DefenseConfig("mcmia", mcmia_retrain_game=False).key == "mcmia-proper-k7-admm-4"
    assert DefenseConfig("adv", 2.0).relevant() != DefenseConfig("adv", 4.0).relevant()
