"""``/api/v1/evaluations/{name}/{direction}``: an evaluation report's queries, worst first, and their pictures."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from reid.serve.dependencies import Service
from reid.serve.errors import error_responses
from reid.serve.schemas import EvaluationView
from reid.serve.service import MAX_ID

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])
Name = Annotated[str, Path(description="the report's name, as /api/v1/gallery lists it")]


@router.get("/{name}/{direction}", summary="An evaluation's summary and its queries, worst first",
            response_model=EvaluationView, responses=error_responses(404))
def evaluation(service: Service, name: Name, direction: str) -> dict:
    return service.evaluation(name).view(direction)


@router.get("/{name}/{direction}/{query}/thumbnail", response_class=Response,
            summary="An evaluated query's image (rank 0), its k-th result, or its first true match (at its rank)",
            responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG"}} | error_responses(404))
def thumbnail(service: Service, name: Name, direction: str,
              query: Annotated[int, Path(ge=-MAX_ID, le=MAX_ID)],
              rank: Annotated[int, Query(ge=-MAX_ID, le=MAX_ID)] = 0) -> Response:
    return Response(service.evaluation_thumbnail(name, direction, query, rank), media_type="image/jpeg",
                    headers={"Cache-Control": "max-age=3600"})
