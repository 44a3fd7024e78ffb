"""Skipping a test for a missing tool, unless the test command installed it.

`.ci/test-all.sh` installs every tool the tests need and sets
`LIGHTSTREAM_REQUIRE_TEST_TOOLS`; there a missing tool fails the test
instead of letting it pass unrun. Run by hand without the tool, the test
skips and says why.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "LIGHTSTREAM_REQUIRE_TEST_TOOLS"


def missing(reason: str) -> None:
    """Skips the calling test with `reason`, or fails it under the test command."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set, so the test command should have installed it")
    pytest.skip(reason)
