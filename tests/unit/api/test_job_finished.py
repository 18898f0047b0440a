"""When is an SFTJob done for good? Only a failure before the start may be retried by an edit."""

from __future__ import annotations

from typing import Any

import pytest

from kubesft.api.job_status import is_finished

FAILED_EARLY = {"phase": "Failed", "observedGeneration": 1}


@pytest.mark.parametrize(
    ("status", "generation", "finished"),
    [
        (None, 1, False),
        ({"phase": "Running", "startTime": "t"}, 1, False),
        ({"phase": "Succeeded", "observedGeneration": 1, "startTime": "t"}, 2, True),
        ({"phase": "Failed", "observedGeneration": 1, "startTime": "t"}, 2, True),
        (FAILED_EARLY, 1, True),  # not edited since it failed
        (FAILED_EARLY, 2, False),  # edited: evaluate again
        ({"phase": "Failed"}, 2, True),  # nothing says which generation failed
    ],
)
def test_is_finished(status: dict[str, Any] | None, generation: int, finished: bool) -> None:
    assert is_finished(status, generation) is finished
