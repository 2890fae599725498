"""Base model for every protocol document: strict about unknown fields."""

from pydantic import BaseModel, ConfigDict


class ProtocolModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
