"""Skip, or fail in CI, when a system package that a test needs is missing."""

import os

import pytest


def require_system(condition: bool, reason: str) -> None:
    """Skip the current test when a system package/resource is missing (``condition`` false).

    With ``RESNET_REPRO_FAIL_ON_SKIP=1`` (set by CI) the test fails instead, so that a broken CI image cannot
    silently skip the SLURM or data tests.
    """
    if condition:
        return
    if os.environ.get("RESNET_REPRO_FAIL_ON_SKIP") == "1":
        pytest.fail(f"{reason} (RESNET_REPRO_FAIL_ON_SKIP=1)", pytrace=False)
    pytest.skip(reason)
