"""The administrators' API under `/admin/v1`, one router per resource."""

from fastapi import APIRouter

from gateway.routes.admin import (
    agreements, audit, consents, destinations, destruction, items, policy, principals, stats, tokens,
)


def router() -> APIRouter:
    combined = APIRouter(prefix="/admin/v1")
    for module in (agreements, items, consents, policy, audit, destruction, principals, destinations, tokens, stats):
        combined.include_router(module.router)
    return combined
