"""Typed settings of hwq, read once from HWQ_* variables and an optional hwq.toml."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
