"""The HTTP API: routers, auth and request/response mapping. No business logic."""
