"""The `models` asset group: one lineage per model of the ML team's catalog.

Each catalog entry (noderr_pipelines/defs/models/catalog/models.yaml, or NODERR_MODEL_CATALOG)
becomes its own chain of assets, checks and `publish_<prefix>_job` through the delivery-assets
factory (`noderr_pipelines.lib.model_lineage`). The catalog is read when the code location loads.
"""

from __future__ import annotations

from noderr_pipelines.lib.model_catalog import ModelCatalog
from noderr_pipelines.lib.model_lineage import ModelLineage, model_lineage


def build_lineages(catalog: ModelCatalog) -> list[ModelLineage]:
    return [model_lineage(spec) for spec in catalog.models]
