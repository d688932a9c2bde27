"""Celery app and one module per pipeline stage."""
