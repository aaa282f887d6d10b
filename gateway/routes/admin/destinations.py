"""Destinations: upstream providers, their formats, models and whether they are third parties."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, HttpUrl, field_validator

from gateway.domain import ApiFormat, Destination
from gateway.errors import NotFound
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage import destinations as store

router = APIRouter(tags=["destinations"], dependencies=[Depends(plain_parameters)])


class DestinationIn(AdminBody):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    base_url: HttpUrl = Field(description="what the provider's own SDK takes as base URL")
    api_format: Literal["openai", "anthropic"]
    models: list[str] = Field(default_factory=list, max_length=1000,
                              description="model names or patterns such as gpt-4o*")
    third_party: bool = True
    trains_on_inputs: bool = False
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
    timeout_seconds: float = Field(default=600.0, gt=0, le=3600)
    ready: bool | None = Field(default=None, description="read-only (whether the key variable is set); ignored")

    @field_validator("base_url")
    @classmethod
    def _storable_url(cls, value: HttpUrl) -> HttpUrl:
        if len(str(value)) > 2048:  # the store's column; measured after normalization (punycode makes hosts longer)
            raise ValueError("at most 2048 characters")
        return value

    def to_domain(self) -> Destination:
        return Destination(
            id=self.id, base_url=str(self.base_url).rstrip("/"), api_format=ApiFormat(self.api_format),
            models=tuple(self.models), third_party=self.third_party, trains_on_inputs=self.trains_on_inputs,
            api_key_env=self.api_key_env, timeout_seconds=self.timeout_seconds)


def _view(request: Request, destination: Destination) -> dict[str, Any]:
    missing = request.app.state.ports.forwarder.missing_key(destination)
    return {**store.to_json(destination), "ready": missing is None}


@router.get("/destinations")
def list_destinations(request: Request, _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.all_destinations(request.app.state.engine)
    return {"data": [_view(request, d) for d in found], "next_cursor": None}


@router.post("/destinations", status_code=201)
def put_destination(body: DestinationIn, request: Request, response: Response,
                    _: Admin = Depends(require())) -> dict[str, Any]:
    destination = body.to_domain()
    created = store.upsert_destination(request.app.state.engine, destination)
    response.status_code = 201 if created else 200
    request.app.state.reload_destinations()
    return _view(request, destination)


@router.get("/destinations/{destination_id}")
def get_destination(destination_id: str, request: Request,
                    _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_destination(request.app.state.engine, destination_id)
    if found is None:
        raise NotFound(f"接続先 '{destination_id}' はありません。 / There is no destination '{destination_id}'.")
    return _view(request, found)


@router.delete("/destinations/{destination_id}", status_code=204)
def delete_destination(destination_id: str, request: Request, _: Admin = Depends(require())) -> Response:
    if not store.delete_destination(request.app.state.engine, destination_id):
        raise NotFound(f"接続先 '{destination_id}' はありません。 / There is no destination '{destination_id}'.")
    request.app.state.reload_destinations()
    return Response(status_code=204)
