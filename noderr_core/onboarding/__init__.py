"""Operator onboarding: Typeform intake, screening, admin decisions, provisioning, config bundles.

Modules:
  typeform      signature check, payload parsing (field-ref mapping), idempotent ingestion
  screening     automatic checks that move an application to pending_review (or reject it)
  applications  the application state machine and the admin decision
  provisioning  carrying out a decision: operator, node, API key, download token, emails, chain row
  bundle        the node's configuration bundle (.env, docker-compose.yml, README.md) as a zip
  portal        the operator's download link: inspect (GET) and consume once (POST)
"""
