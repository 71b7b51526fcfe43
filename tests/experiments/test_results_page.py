"""docs/results.md is generated from the published run's results.json and the prose template: it
must be what scripts/results_page.py writes today, so no figure on the page drifts from the data."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_page_is_what_the_script_writes_from_the_run():
    script = _script()
    run = ROOT / "docs" / "runs" / "faces-lodo-1000"
    written = script.page(run)
    assert (ROOT / "docs" / "results.md").read_text() == written, (
        "docs/results.md is stale: run `python scripts/results_page.py`"
    )
    assert "{" not in written.split("## Tables")[0]  # every placeholder filled
    assert script.figures(script.ProtocolResult.load(run))["verdict"] in written
