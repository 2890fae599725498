"""Reward journey of the demo (filled in below once the rewards pipeline lands)."""

from noderr_demo.report import DemoFailure


def publish_epoch(demo) -> str:
    raise DemoFailure("reward epoch step not wired yet")


def claim_rewards(demo, applicant) -> str:
    raise DemoFailure("claim step not wired yet")
