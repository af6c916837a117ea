import pytest

from tfprune_mia.errors import ConfigError
from tfprune_mia.registry import Registry


def test_unknown_name_lists_the_valid_ones():
    registry = Registry("widget")
    registry.register("alpha")(object)
    registry.register("beta")(object)
    with pytest.raises(ConfigError, match="unknown widget 'gamma'.*alpha, beta"):
        registry.get("gamma")


def test_duplicate_registration_is_refused():
    registry = Registry("widget")
    registry.register("alpha")(object)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("alpha")(int)
