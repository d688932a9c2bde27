"""Pydantic models shared by the API and the workers."""
