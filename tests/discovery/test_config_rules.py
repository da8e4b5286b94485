"""Bad discovery config values fail at start-up with the key's name."""

from __future__ import annotations

import pytest

from causal_engine.config import ConfigError, validate
from causal_engine.run import RULES


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.node_range=[10]", "data.node_range"),
        ("data.prior.obs_only_share=1.5", "data.prior.obs_only_share"),
        ("data.prior.soft_share=-0.1", "data.prior.soft_share"),
        ("data.prior.num_queries=0", "data.prior.num_queries"),
        ("model.threshold=1.0", "model.threshold"),
        ("model.net.d_model=0", "model.net.d_model"),
    ],
)
def test_bad_pfn_values_name_the_key(compose, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose(["experiment=pfn", override]), RULES)


def test_pfn_presets_validate(compose) -> None:
    validate(compose(["experiment=pfn"]), RULES)
    validate(compose(["experiment=pfn_compare", "model=pfn_c"]), RULES)
