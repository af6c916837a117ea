import dataclasses
import json

import pytest

from tfprune_mia.errors import ConfigError
from tfprune_mia.options import NoOptions
from tfprune_mia.pruning import (PRUNERS, ADMMOptions, L1UnstructuredOptions, PruneConfig, SlimmingOptions)

# One non-default options value per pruner (NoOptions for those without settings).
NON_DEFAULT = {"l1_unstructured": (0.5, L1UnstructuredOptions(schedule="polynomial", m_by_n="2:4")),
               "l1_filter": (0.5, NoOptions()), "l2_filter": (0.5, NoOptions()),
               "slimming": (0.5, SlimmingOptions(mode="one_shot", l1=0.01)),
               "admm": (0.8, ADMMOptions(iterations=3, epochs=2, rho=0.01, rho_growth=1.5, rho_max=0.5))}


def test_every_pruner_has_a_case():
    assert set(NON_DEFAULT) == set(PRUNERS.names())


@pytest.mark.parametrize("pruner", sorted(NON_DEFAULT))
@pytest.mark.parametrize("non_default", [False, True])
def test_to_dict_round_trips_through_json_for_every_pruner(pruner, non_default):
    sparsity, options = NON_DEFAULT[pruner]
    config = PruneConfig(pruner, sparsity, options if non_default else None)
    data = json.loads(json.dumps(config.to_dict()))
    assert data == dataclasses.asdict(config)
    again = PruneConfig.from_dict(data)
    assert again == config and type(again.options) is type(config.options) and again.key == config.key


def test_defaults_are_filled_in_and_keys_name_the_options():
    assert PruneConfig("admm", 0.7) == PruneConfig("admm", 0.7, ADMMOptions())
    assert PruneConfig("admm", 0.7).key == "admm-0.7"
    assert PruneConfig("admm", 0.7, ADMMOptions(iterations=3, rho=0.2)).key == "admm-0.7-K3-rho0.2"
    assert PruneConfig("l1_unstructured", 0.5, L1UnstructuredOptions(m_by_n="2:4")).key == "l1_unstructured-0.5-2by4"
    assert PruneConfig("slimming", 0.5).key == "slimming-0.5-l10.0001"
    assert PruneConfig("slimming", 0.5, SlimmingOptions(mode="one_shot")).key == "slimming-0.5-oneshot"
    # Values that `:g` would round together still get distinct keys.
    assert PruneConfig("l1_filter", 0.7).key != PruneConfig("l1_filter", 0.70000001).key


def test_from_dict_reads_the_flat_records_written_before_options():
    flat = {"pruner": "admm", "sparsity": 0.7, "schedule": "constant", "scope": "layer", "m_by_n": "",
            "slimming_mode": "l1", "slimming_l1": 1e-4, "admm_iterations": 3, "admm_epochs": 1, "admm_rho": 1e-3,
            "admm_rho_growth": 1.3, "admm_rho_max": 1.0}
    assert PruneConfig.from_dict(flat) == PruneConfig("admm", 0.7, ADMMOptions(iterations=3))


@pytest.mark.parametrize("data, fragment", [
    ({"pruner": "admm", "sparsity": 0.7, "options": {"iterationz": 3}}, "ADMMOptions has no option iterationz"),
    ({"pruner": "admm", "sparsity": 0.7, "options": {}, "extra": 1},
     "unknown fields extra; expected pruner, sparsity and options"),
    ({"pruner": "nope", "sparsity": 0.7, "options": {}}, "unknown pruner 'nope'"),
])
def test_from_dict_refuses_what_it_cannot_read(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        PruneConfig.from_dict(data)
