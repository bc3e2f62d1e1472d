"""The daemon's footprint: `voltstack-agent run` must not load what only the
commissioning commands need (rich's tables and progress bars cost ~4 MB of
the agent's 50 MB budget; docs/performance.md, `python -m bench agent`)."""

from __future__ import annotations

import subprocess
import sys


def test_the_daemon_path_imports_no_rich() -> None:
    probe = (
        "import sys\n"
        "import edge_agent.entrypoints.cli, edge_agent.service.agent\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
