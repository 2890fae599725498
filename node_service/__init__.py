"""The Noderr inference node: syncs signed ONNX models from the control plane, serves inference
with dynamic micro-batching, works leased tasks and reports telemetry.

It speaks only HTTP to the control plane (schemas in `noderr_protocol`) and never imports the
control plane's packages (no database, no S3 credentials, no Dagster), so its container stays small.
"""

AGENT_VERSION = "0.1.0"
