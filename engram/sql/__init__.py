"""SQL store: jobs, per-memory events and memory history (SQLAlchemy 2 Core)."""
