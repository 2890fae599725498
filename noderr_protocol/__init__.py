"""The node <-> control-plane HTTP protocol: versioned Pydantic schemas and signature checks.

Shared by the API (which serves it) and the node (which speaks it). Depends only on pydantic and
cryptography, so the node container stays small. Unknown fields are rejected (extra="forbid").
"""

PROTOCOL_VERSION = 1
