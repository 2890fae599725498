"""The slashing monitor's domain: evidence of proven misbehaviour and slashing cases.

Modules:
  evidence  the threshold (K proven invalid results among the last N judged, in a window), what
            never counts (error reports, unproven disagreements, a degraded control plane)
  cases     open (evidence + operator e-mail) -> dismissed by an admin in the challenge window, or
            slashing (chain outbox row `slash_stake`) -> slashed | failed; every step audited

The Dagster sensor in noderr_pipelines/defs/slashing only reads (`find_candidate_nodes`,
`due_case_ids`); its job acts through `apply_slashing_decisions`.
"""
