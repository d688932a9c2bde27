"""Settings and the composition root that builds providers from them."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
