"""Base class of the pydantic models that mirror the Avro schemas in ``schemas/``.

Conventions shared by every model:
- one model per named Avro record; ``avro_name`` is the schema's full name;
- timestamps are timezone-aware ``datetime`` (UTC) on the Python side and
  ``{"type": "long", "logicalType": "timestamp-millis"}`` on the Avro side;
- Avro enums are ``StrEnum`` on the Python side, with the same symbols;
- models are frozen and forbid unknown fields.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import pydantic

from consentgate.errors import ValidationError

__all__ = ["AvroModel"]


class AvroModel(pydantic.BaseModel):
    """A pydantic model that round-trips through an Avro record of the same shape."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    avro_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The dict that fastavro/avro encode with this model's schema."""
        return self.model_dump(mode="python")

    @classmethod
    def from_avro(cls, data: Any) -> Self:
        """Validate a decoded Avro datum; errors name the field path and the bad value."""
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise ValidationError(
                f"{cls.__name__}: {path or '<root>'}: {first['msg']} (got {first.get('input')!r})",
                path=path,
                value=first.get("input"),
            ) from exc
