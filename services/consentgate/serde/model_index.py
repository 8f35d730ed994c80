"""Which pydantic model mirrors which Avro record: every ``AvroModel`` subclass defined in
the ``consentgate.models`` package, by ``avro_name``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import consentgate.models
from consentgate.errors import SchemaError
from consentgate.models._base import AvroModel

__all__ = ["model_for", "models_by_name"]


def _subclasses(cls: type[AvroModel]) -> list[type[AvroModel]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


@functools.cache
def models_by_name() -> dict[str, type[AvroModel]]:
    """Every model of ``consentgate.models`` by Avro full name (imports the package once)."""
    package = consentgate.models
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    index: dict[str, type[AvroModel]] = {}
    for model in _subclasses(AvroModel):
        name = model.__dict__.get("avro_name")
        if not isinstance(name, str) or not model.__module__.startswith(package.__name__):
            continue
        if name in index and index[name] is not model:
            raise SchemaError(f"two models mirror {name}: {index[name]!r} and {model!r}")
        index[name] = model
    return index


def model_for(name: str) -> type[AvroModel] | None:
    """The model mirroring the record ``name`` (full name), if there is one."""
    return models_by_name().get(name)
