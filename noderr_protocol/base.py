"""Base model for every protocol document: strict about unknown fields."""

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints


class ProtocolModel(BaseModel):
    # Unknown fields are refused, and so are NaN/Infinity: JSON has no such numbers, and a
    # "NaN"/"INF" string coerced into a float would poison telemetry and quorum comparisons.
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


def _json_number_only(value: Any) -> Any:
    # JSON Schema's `integer`/`number` accept 3 and 3.0 but never "3" or true; pydantic's lax mode
    # would coerce those, so a malformed client would be accepted against the published schema.
    if isinstance(value, (str, bytes, bool)):
        raise ValueError("must be a JSON number, not a string or boolean")
    return value


JSONInt = Annotated[int, BeforeValidator(_json_number_only)]
JSONFloat = Annotated[float, BeforeValidator(_json_number_only)]
# Counters are stored as BIGINT and versions as INTEGER: bound them so an absurd value is a 422, not
# a database overflow. Counters stop at 2^53 - 1, the largest integer every JSON parser keeps exact
# (a bound of 2^63 - 1 is not even representable as a double).
JSONCounter = Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(_json_number_only)]
JSONVersion = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(_json_number_only)]
# The bound must come before the validator for pydantic to publish it as `minimum` in the schema.
NonNegativeJSONFloat = Annotated[float, Field(ge=0), BeforeValidator(_json_number_only)]

# Every list, map and string a node or client sends is bounded, so one document cannot make the
# control plane store or render an unbounded amount (a heartbeat listing 50,000 models made the
# admin pages 18 MB). Bounds are generous multiples of what a real node sends.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_MODELS_PER_NODE = 64
MAX_TENSORS = 32
ModelName = Annotated[str, StringConstraints(max_length=63, pattern=MODEL_NAME_PATTERN)]
TaskId = Annotated[str, StringConstraints(min_length=1, max_length=40)]
TensorName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Named tensors: name -> a batch of rows; element counts are bounded by the body size limit.
Tensors = Annotated[dict[TensorName, list[Any]], Field(max_length=MAX_TENSORS)]
