"""Memories, v2/v3 routes the current mem0ai client calls: add, get_all (paginated) and search."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.deps import ContainerDep, ProjectDep
from api.routers.memories import ERRORS, add_memories, search_memories
from engram import memories
from schemas.jobs import AddAccepted, AddCompleted
from schemas.memories import GetAllRequest, MemoryList, MemoryPage

router = APIRouter(tags=["memories"])

router.add_api_route(
    "/v3/memories/add/",
    add_memories,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AddAccepted | AddCompleted,
    responses={200: {"model": AddCompleted}, **ERRORS},
    summary="Add memories (v3)",
)
for version in ("v2", "v3"):
    router.add_api_route(
        f"/{version}/memories/search/",
        search_memories,
        methods=["POST"],
        response_model=MemoryList,
        responses=ERRORS,
        summary=f"Search memories ({version})",
    )


def get_all(
    body: GetAllRequest,
    request: Request,
    c: ContainerDep,
    project_id: ProjectDep,
    page: int | None = None,
    page_size: int | None = None,
) -> MemoryPage:
    """Memories matching the filters, newest first, in Mem0's paginated shape."""
    number, size = page or body.page, page_size or body.page_size
    if number < 1 or not 1 <= size <= 1000:
        from engram.filters import FilterError

        raise FilterError("page must be ≥ 1 and page_size between 1 and 1000")
    where = memories.require_scope(
        memories.build_where(
            body.filters, body, categories=body.categories, start_date=body.start_date, end_date=body.end_date
        )
    )
    total, results = memories.page(c, project_id, where, page=number, page_size=size, include_expired=body.show_expired)
    more = number * size < total
    url = request.url
    return MemoryPage(
        count=total,
        next=str(url.include_query_params(page=number + 1, page_size=size)) if more else None,
        previous=str(url.include_query_params(page=number - 1, page_size=size)) if number > 1 else None,
        results=results,
    )


for version in ("v2", "v3"):
    router.add_api_route(
        f"/{version}/memories/",
        get_all,
        methods=["POST"],
        response_model=MemoryPage,
        responses=ERRORS,
        summary=f"Get all memories ({version})",
    )
