"""Which destination serves a model: `model` names a model one destination serves, or `<destination>/<model>`.

A destination's `models` may hold shell-style patterns (`gpt-4o*`); a destination
with no models serves only the qualified `<destination>/<model>` form. A plain
name goes to a destination speaking the endpoint's format (OpenAI endpoints to
`openai` destinations, `/v1/messages` to `anthropic` ones); when two of those
serve it, the first by id wins, and the other is reached by qualifying the name. The table is swapped whole on reload, so readers never see half of it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from gateway.domain import ApiFormat, Destination
from gateway.errors import InvalidRequest, NotFound


def _unknown(model: str) -> NotFound:
    return NotFound(
        f"モデル '{model}' はこのゲートウェイのどの接続先にも設定されていません。 / "
        f"The model '{model}' is not served by any destination of this gateway.",
        code="model_not_found", param="model")


class Router:
    """The destinations known to this process, indexed for the hot path."""

    def __init__(self, destinations: Iterable[Destination] = ()) -> None:
        self.replace(destinations)

    def replace(self, destinations: Iterable[Destination]) -> None:
        ordered = sorted(destinations, key=lambda d: d.id)
        exact: dict[tuple[ApiFormat, str], Destination] = {}
        any_format: dict[str, Destination] = {}
        patterns: list[tuple[str, Destination]] = []
        for destination in ordered:
            for model in destination.models:
                if any(ch in model for ch in "*?["):
                    patterns.append((model, destination))
                else:
                    exact.setdefault((destination.api_format, model), destination)
                    any_format.setdefault(model, destination)
        self._by_id = {d.id: d for d in ordered}
        self._exact = exact
        self._any_format = any_format
        self._patterns = patterns

    @property
    def destinations(self) -> list[Destination]:
        return list(self._by_id.values())

    def get(self, destination_id: str) -> Destination | None:
        return self._by_id.get(destination_id)

    def resolve(self, model: str, api_format: ApiFormat) -> tuple[Destination, str]:
        """(destination, model name to send upstream) for the `model` a client asked for."""
        destination = self._exact.get((api_format, model))
        upstream_model = model
        if destination is None:
            destination = next((d for p, d in self._patterns if d.api_format is api_format
                                and fnmatch.fnmatchcase(model, p)), None)
        if destination is None:
            destination = self._any_format.get(model) or next(
                (d for p, d in self._patterns if fnmatch.fnmatchcase(model, p)), None)
        if destination is None and "/" in model:
            prefix, _, rest = model.partition("/")
            candidate = self._by_id.get(prefix)
            if candidate is not None and rest and (
                not candidate.models or any(fnmatch.fnmatchcase(rest, p) for p in candidate.models)
            ):
                destination, upstream_model = candidate, rest
        if destination is None:
            raise _unknown(model)
        if destination.api_format is not api_format:
            endpoint = "/v1/messages" if destination.api_format is ApiFormat.ANTHROPIC else "/v1/chat/completions"
            raise InvalidRequest(
                f"モデル '{model}' の接続先は {destination.api_format.value} 形式です。{endpoint} を使ってください。 / "
                f"The destination of model '{model}' speaks the {destination.api_format.value} format: "
                f"call {endpoint} instead.", code="wrong_api_format", param="model")
        return destination, upstream_model

    def models(self) -> list[tuple[str, Destination]]:
        """Every concrete model name a client may use, qualified when a plain name is ambiguous."""
        listed: list[tuple[str, Destination]] = []
        for destination in self._by_id.values():
            for model in destination.models:
                if any(ch in model for ch in "*?["):
                    continue
                plain = self._exact.get((destination.api_format, model)) is destination
                name = model if plain else f"{destination.id}/{model}"
                listed.append((name, destination))
        return listed
