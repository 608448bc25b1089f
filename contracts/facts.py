"""What the suite knows about the API, read from ``openapi.yaml``; nothing here restates a fact.

Operations (from ``mock_runbase.conformance``: statuses, the error codes each response may
carry and so the status of each code, response validators compiled once), the API prefixes
and real hosts (from ``servers``), and prices through the model catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mock_runbase.catalog import Model, resolve_ref
from mock_runbase.conformance import OperationSpec as Operation
from mock_runbase.conformance import api_prefixes, operations
from mock_runbase.spec import Spec, load_spec

__all__ = ["Facts", "Operation", "Price", "facts", "use_spec"]

JSON = dict[str, Any]
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Price:
    """What a create would cost: ``micro_usd`` exactly when ``accepted``, else at most that."""

    micro_usd: int
    accepted: bool
    model: Model | None = None
    full_input: JSON | None = None


class Facts:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.document = spec.document
        self.catalog = spec.catalog
        self.operations = {op.id: op for op in operations(spec)}
        self.create = self.operations["createRun"]
        self.get = self.operations["getRun"]
        servers = [s["url"] for s in self.document["servers"]]
        self.api_prefixes = api_prefixes(spec)
        self.real_bases = [u for u in servers if urlsplit(u).hostname not in LOCAL_HOSTS]
        self.real_hosts = {urlsplit(u).hostname for u in self.real_bases}
        self.run_schema = self.schema("Run")
        # every price each model can cost, computed once: a model the suite cannot price
        # fails here, at collection, naming the model (not as a KeyError inside a property)
        self.accepted_prices = {m.id: self.priced(m) for m in self.catalog}

    # --- the document ---------------------------------------------------------------------

    def schema(self, name: str) -> JSON:
        return resolve_ref(self.document, {"$ref": f"#/components/schemas/{name}"})

    def validate(self, operation: Operation, status: int, body: Any) -> list[str]:
        """Why ``body`` is not what the spec documents for this status (empty: it is)."""
        validator = operation.validators.get(status)
        if validator is None:
            return []
        return [
            f"{'/'.join(str(p) for p in error.instance_path) or 'body'}: {error.message}"
            for error in validator.iter_errors(body)
        ]

    # --- money ----------------------------------------------------------------------------

    def accepted(self, body: Any) -> tuple[Model, JSON] | None:
        """(model, input with defaults) when the spec says this create body is accepted."""
        if not isinstance(body, dict) or not self.spec.envelope.is_valid(body):
            return None
        model = self.catalog.get(body["model"])
        if model is None or not self.spec.input_validators[model.id].is_valid(body["input"]):
            return None
        return model, model.with_defaults(body["input"])

    def price(self, body: Any) -> Price:
        """The catalog price of an accepted body; of any other, the most it could cost (the
        named model's dearest option, else the catalog's), in case a server accepts it."""
        found = self.accepted(body)
        if found is not None:
            model, full_input = found
            return Price(model.cost_usd(full_input), True, model, full_input)
        name = body.get("model") if isinstance(body, dict) else None
        named = self.catalog.get(name) if isinstance(name, str) else None
        if named is not None:
            return Price(max(prices(named)), False, named)
        return Price(self.most_expensive(), False)

    def priced(self, model: Model) -> tuple[int, ...]:
        """Every price of the option combinations the model's input schema accepts."""
        validator = self.spec.input_validators[model.id]
        found = tuple(model.prices(validator.is_valid))
        if not found:
            raise ValueError(f"{model.id}: no option combination its input schema accepts")
        return found

    def cheapest(self, model: Model) -> int:
        """The least an accepted input of ``model`` costs."""
        return min(self.accepted_prices[model.id])

    def most_expensive(self) -> int:
        return max(max(prices(m)) for m in self.catalog)


def prices(model: Model) -> list[int]:
    """Every price the catalog gives ``model``, accepted inputs or not (an upper bound for a
    body the spec rejects but a server might accept)."""
    return model.prices()


_SPEC_PATH: list[Path | None] = [None]


def use_spec(path: Path | None) -> None:
    """Judge against another ``openapi.yaml`` (``--spec``); call before ``facts()``."""
    _SPEC_PATH[0] = path
    facts.cache_clear()


@cache
def facts() -> Facts:
    return Facts(load_spec(_SPEC_PATH[0]))
