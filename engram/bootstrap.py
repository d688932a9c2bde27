"""First start in development: an organisation, a project and a key, so the demo works at once."""

from __future__ import annotations

from config.container import Container
from engram.sql.tenancy import CreatedKey

DEV_ORG = "development"
DEV_PROJECT = "default"


def ensure_dev_project(c: Container) -> CreatedKey:
    """A fresh key for the development project, creating its org and project on first start."""
    for project in c.tenancy.list_projects():
        if project["name"] == DEV_PROJECT and project["org_name"] == DEV_ORG:
            return c.tenancy.create_key(project["id"], "development")
    org_id = c.tenancy.create_org(DEV_ORG)
    project_id = c.tenancy.create_project(org_id, DEV_PROJECT)
    return c.tenancy.create_key(project_id, "development")
