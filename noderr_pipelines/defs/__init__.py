"""Per-domain Dagster definitions; each subpackage exposes `defs`."""
