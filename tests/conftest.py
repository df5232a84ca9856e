"""Shared test settings: hypothesis profiles (a fast default, a thorough one for CI nights)."""

import os

from hypothesis import HealthCheck, settings

# Child Python processes the tests start must import the *installed* flight (with its compiled
# extension), never the source tree of the current directory: no cwd/script dir on sys.path.
os.environ["PYTHONSAFEPATH"] = "1"

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
