"""The Serde facade: one object to encode records and decode whatever arrives.

``encode`` writes the current version of a schema: the Confluent wire format when a schema
registry is configured, else Avro single-object encoding (or the format asked for).
``decode`` is the one decoding entry point for both formats: it dispatches on the first
byte (``00`` Confluent, ``C3 01`` single-object) and every failure, of any kind, is a
:class:`~consentgate.errors.DecodeError` located at topic/partition/offset with the raw bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro.validation import ValidationError as FastavroValidationError
from fastavro.validation import validate

from consentgate.errors import ConsentgateError, DecodeError, SchemaError, ValidationError
from consentgate.models._base import AvroModel
from consentgate.serde.confluent import ConfluentCodec
from consentgate.serde.model_index import models_by_name
from consentgate.serde.repository import SchemaEntry, SchemaRepository
from consentgate.serde.settings import RegistrySettings, SerdeSettings, registry_client_conf
from consentgate.serde.single_object import SingleObjectCodec
from consentgate.serde.wire import Decoded, WireFormat, detect_format

__all__ = ["Serde"]

M = TypeVar("M", bound=AvroModel)
Buffer = bytes | bytearray | memoryview  # what decode accepts (anything else: DecodeError)


def _located(
    error: DecodeError, topic: str | None, partition: int | None, offset: int | None
) -> DecodeError:
    if topic is None and partition is None and offset is None:
        return error
    return type(error)(error.reason, raw=error.raw, topic=topic, partition=partition, offset=offset)


def _invalid(entry: SchemaEntry, datum: Any, cause: Exception) -> ValidationError:
    """A ValidationError naming the offending field, found by fastavro's validator."""
    path, value, detail = "", None, f"{type(cause).__name__}: {cause}"
    try:
        validate(datum, entry.parsed, raise_errors=True, strict=True)
    except FastavroValidationError as exc:
        first = exc.errors[0]
        path = str(first.field).removeprefix(entry.name).lstrip(".")
        value = first.datum
        detail = f"{value!r} is not a valid {first.schema!r}"
    except (TypeError, ValueError, AttributeError, KeyError):
        pass  # the validator choked too: the writer's own message is the best we have
    return ValidationError(f"{entry.name}: {path or '<root>'}: {detail}", path=path, value=value)


class Serde:
    """Encode and decode the repository's records, with or without a schema registry."""

    def __init__(
        self,
        repository: SchemaRepository | None = None,
        *,
        registry: SchemaRegistryClient | None = None,
        auto_register: bool = True,
    ) -> None:
        self._repository = repository if repository is not None else SchemaRepository.load()
        self._single = SingleObjectCodec(self._repository)
        self._confluent = (
            ConfluentCodec(self._repository, registry, auto_register=auto_register)
            if registry is not None
            else None
        )
        self._models = models_by_name()

    @classmethod
    def from_settings(cls, settings: RegistrySettings | None = None) -> Serde:
        """A Serde as the settings describe it (default: :class:`SerdeSettings` from the
        environment; ``consentgate.settings.Settings`` works too).
        """
        settings = settings if settings is not None else SerdeSettings()
        conf = registry_client_conf(settings)
        return cls(
            SchemaRepository.load(getattr(settings, "schemas_dir", None)),
            registry=SchemaRegistryClient.new_client(conf) if conf is not None else None,
            auto_register=bool(getattr(settings, "schema_registry_auto_register", True)),
        )

    @property
    def repository(self) -> SchemaRepository:
        return self._repository

    @property
    def default_format(self) -> WireFormat:
        """What ``encode`` writes unless told otherwise."""
        return WireFormat.CONFLUENT if self._confluent is not None else WireFormat.SINGLE_OBJECT

    def encode(
        self,
        record: AvroModel | Mapping[str, Any],
        schema_name: str | None = None,
        *,
        wire_format: WireFormat | None = None,
    ) -> bytes:
        """Encode a model (schema from its ``avro_name``) or a dict (``schema_name`` needed).

        Raises SchemaError for an unknown schema or a registry refusal, ValidationError when
        the datum does not fit the schema (naming the field).
        """
        if isinstance(record, AvroModel):
            name = record.avro_name
            if schema_name is not None and self._repository.current(schema_name).name != name:
                raise SchemaError(f"a {name} model cannot be encoded as {schema_name}")
            datum: Mapping[str, Any] = record.to_avro()
        elif schema_name is None:
            raise SchemaError("encoding a dict needs the schema name")
        else:
            name, datum = schema_name, record
        entry = self._repository.current(name)
        fmt = wire_format or self.default_format
        try:
            if fmt is WireFormat.CONFLUENT:
                if self._confluent is None:
                    raise SchemaError("the Confluent wire format needs a schema registry")
                return self._confluent.encode(entry, datum)
            return self._single.encode(entry, datum)
        except ConsentgateError:
            raise
        except Exception as exc:  # fastavro raises TypeError, ValueError, KeyError, ...
            raise _invalid(entry, datum, exc) from exc

    def decode(
        self,
        raw: Buffer | None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Decoded:
        """Decode either wire format into (full schema name, datum); only DecodeError escapes."""
        try:
            return self._decode(raw)
        except DecodeError as exc:
            raise _located(exc, topic, partition, offset) from exc.__cause__
        except Exception as exc:  # defensive: the contract is DecodeError, whatever happened
            error = DecodeError(
                f"{type(exc).__name__}: {exc}", raw=raw if isinstance(raw, bytes) else None
            )
            raise _located(error, topic, partition, offset) from exc

    def _decode(self, raw: Buffer | None) -> Decoded:
        if raw is None:
            raise DecodeError("no value (null record value)", raw=None)
        if isinstance(raw, (bytearray, memoryview)):
            raw = bytes(raw)
        if not isinstance(raw, bytes):
            raise DecodeError(f"expected bytes, got {type(raw).__name__}", raw=None)
        if detect_format(raw) is WireFormat.SINGLE_OBJECT:
            return self._single.decode(raw)
        if self._confluent is None:
            raise DecodeError(
                "Confluent wire format (magic byte 00) needs a schema registry; none is "
                "configured (set CONSENTGATE_SCHEMA_REGISTRY_URL)",
                raw=raw,
            )
        return self._confluent.decode(raw)

    @overload
    def decode_model(
        self,
        raw: Buffer | None,
        model: type[M],
        *,
        topic: str | None = ...,
        partition: int | None = ...,
        offset: int | None = ...,
    ) -> M: ...

    @overload
    def decode_model(
        self,
        raw: Buffer | None,
        model: None = ...,
        *,
        topic: str | None = ...,
        partition: int | None = ...,
        offset: int | None = ...,
    ) -> AvroModel: ...

    def decode_model(
        self,
        raw: Buffer | None,
        model: type[AvroModel] | None = None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> AvroModel:
        """Decode and validate into the model mirroring the record (``model`` if given, and
        the record must then be that one). Validation failures are DecodeErrors too.
        """
        name, value = self.decode(raw, topic=topic, partition=partition, offset=offset)
        cls = self._models.get(name)
        reason = None
        if model is not None and name != model.avro_name:
            reason = f"expected a {model.avro_name}, got a {name}"
        elif cls is None:
            reason = f"no model mirrors {name}"
        else:
            try:
                return cls.from_avro(value)
            except ValidationError as exc:
                reason = f"invalid {exc}"
        data = bytes(raw) if raw is not None else None  # decode succeeded: raw is a buffer
        raise _located(DecodeError(reason, raw=data), topic, partition, offset)
