"""Vector store adapters; every one passes tests/contract/."""
