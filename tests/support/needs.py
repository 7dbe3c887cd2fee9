"""What to do when a test's real component is missing: skip on a laptop, fail in CI.

A CI run that skipped its broker or browser tests would be green and worthless, so under
`CI=true` a missing component is a failure with the same message. (`missing` lives with the
broker provider in `consumer.testing_broker`, which users' tests get too.)
"""

from __future__ import annotations

from consumer.testing_broker import missing

__all__ = ["missing"]
