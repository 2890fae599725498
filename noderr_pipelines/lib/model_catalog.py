"""The ML team's model catalog: every model the platform delivers, declared once, as data.

A YAML file (NODERR_MODEL_CATALOG; default `noderr_pipelines/defs/models/catalog/models.yaml`)
lists models with their name (the beacon name), source (a training recipe from
`noderr_core.modelstore.reference.TRAINERS` or an ONNX file: local path or s3:// URI), accuracy
floor, declared metrics and expected signature. Each entry becomes its own asset lineage (see
`noderr_pipelines.lib.model_lineage`), so adding a model is a catalog edit, not a code change.

Rules: names follow the protocol's model-name rule and are unique (so are their asset prefixes);
a source names exactly one of `training` / `onnx`; an unknown training recipe or a malformed entry
fails the code location's load with a message naming the entry.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from noderr_core.modelstore.reference import TRAINERS
from noderr_core.settings import Settings

DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "defs" / "models" / "catalog" / "models.yaml"
# Same rule as noderr_protocol.models.ModelManifest.name.
MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorDecl(_Strict):
    name: str
    dtype: str | None = None
    shape: list[int | None] | None = None


class SignatureDecl(_Strict):
    inputs: list[TensorDecl]
    outputs: list[TensorDecl]


class ModelSource(_Strict):
    training: str | None = Field(default=None, description="a recipe in reference.TRAINERS")
    onnx: str | None = Field(default=None, description="local path or s3://bucket/key")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.training is None) == (self.onnx is None):
            raise ValueError("source needs exactly one of `training` or `onnx`")
        if self.training is not None and self.training not in TRAINERS:
            raise ValueError(f"unknown training recipe {self.training!r}: "
                             f"use one of {', '.join(sorted(TRAINERS))}")
        return self


class ModelSpec(_Strict):
    name: str
    source: ModelSource
    description: str = ""
    accuracy_floor: float | None = Field(default=None, ge=0, le=1)
    metrics: dict[str, float] = Field(
        default_factory=dict, description="metrics the ML team measured (ONNX sources)")
    signature: SignatureDecl | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not MODEL_NAME_RE.fullmatch(value):
            raise ValueError(f"model name {value!r}: use 1-63 characters a-z, 0-9, '-' or '_', "
                             "starting with a letter or digit")
        return value

    @property
    def asset_prefix(self) -> str:
        """Prefix of this model's asset names: `iris-classifier` → `iris_classifier`."""
        return self.name.replace("-", "_")


class ModelCatalog(_Strict):
    models: list[ModelSpec]

    @model_validator(mode="after")
    def _unique(self) -> ModelCatalog:
        seen: set[str] = set()
        for spec in self.models:
            if spec.asset_prefix in seen:
                raise ValueError(f"model {spec.name!r} is declared twice (asset prefix "
                                 f"{spec.asset_prefix!r} taken)")
            seen.add(spec.asset_prefix)
        return self

    def get(self, name: str) -> ModelSpec | None:
        return next((spec for spec in self.models if spec.name == name), None)


def catalog_path(settings: Settings | None = None) -> Path:
    settings = settings or Settings()
    return settings.model_catalog or DEFAULT_CATALOG


def load_model_catalog(path: Path | None = None) -> ModelCatalog:
    path = path or catalog_path()
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CatalogError(f"model catalog {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"model catalog {path} is not valid YAML: {exc}") from exc
    try:
        return ModelCatalog.model_validate(document or {"models": []})
    except ValidationError as exc:
        raise CatalogError(f"model catalog {path} is invalid:\n{exc}") from exc
