"""Test-suite configuration: Hypothesis profiles.

``HYPOTHESIS_PROFILE`` selects one: ``dev`` (quick, the default on a workstation),
``ci`` (more examples, used when ``CI=true``) and ``thorough`` (long runs on demand).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
