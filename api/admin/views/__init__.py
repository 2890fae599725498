"""Read models of the admin dashboard's pages: what each page shows, composed from domain reads.

  paging        Page, paginate, like_pattern (page sizes, search patterns)
  series        chart time series bucketed in SQL (chart points per window)
  network       network overview, node list, node page
  operators     operator list, operator page
  applications  application list, application page (timeline, provisioning), audit log

Single-domain reads live in their domain (noderr_core.network.node_status_counts,
noderr_core.tasks.stats, noderr_core.rewards.history, noderr_core.audit.audit_filter_choices,
noderr_core.onboarding.applications.application_status_counts); this package only composes them
into pages and makes the presentation choices (paging, chart buckets).
"""
