"""rewards pipelines."""

import dagster as dg

defs = dg.Definitions()
