"""Skipping a test for a missing tool, unless the test command installed it.

`.ci/test-all.sh` installs every tool the tests need and sets
`LIGHTSTREAM_REQUIRE_TEST_TOOLS`; there a missing tool fails the test
instead of letting it pass unrun. Run by hand without the tool, the test
skips and says why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_ENV = "LIGHTSTREAM_REQUIRE_TEST_TOOLS"


def missing(reason: str) -> None:
    """Skips the calling test with `reason`, or fails it under the test command."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}; {REQUIRE_ENV} is set, so the test command should have installed it")
    pytest.skip(reason)


# The Node project whose node_modules hold KafkaJS (npm ci by the test command).
JS = Path(__file__).parent.parent / "js"


def node_with_kafkajs() -> str:
    """The `node` binary, once KafkaJS is installed in `JS`; else `missing`."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (.ci/test-all.sh installs it)")
    if not (JS / "node_modules" / "kafkajs").is_dir():
        missing("compat-tests/js has no node_modules (.ci/test-all.sh runs npm ci there)")
    return node
