"""Celery reads its configuration from this module, lazily, the first time it needs it."""

from config.settings import get_settings
from workers.celery_app import celery_config

globals().update(celery_config(get_settings()))
