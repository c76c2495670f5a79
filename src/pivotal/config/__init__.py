"""Typed, strict configuration: one YAML file, environment overrides, built-in defaults."""

from pivotal.config.loader import ENV_PREFIX, find_config_file, load_config, masked_dump
from pivotal.config.models import (
    DownloadConfig,
    ExchangeConfig,
    MarketConfig,
    PivotalConfig,
    StoreConfig,
)

__all__ = [
    "ENV_PREFIX",
    "DownloadConfig",
    "ExchangeConfig",
    "MarketConfig",
    "PivotalConfig",
    "StoreConfig",
    "find_config_file",
    "load_config",
    "masked_dump",
]
