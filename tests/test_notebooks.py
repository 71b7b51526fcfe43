"""The notebooks run top to bottom (the checks inside them must hold)."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


# Small settings for reproduce_gfr.ipynb (read from the environment by its first cell).
SMALL_GFR = {"MFR_NB_STEPS": "3", "MFR_NB_METHODS": "mfr,arcface", "MFR_NB_TARGETS": "0"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quickstart.ipynb", "reproduce_gfr.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch, faces_root_or_none):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for k, v in SMALL_GFR.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MFR_NB_DATA", str(faces_root_or_none or tmp_path / "absent"))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    if name == "quickstart.ipynb":
        assert "L_hp=" in text and "meta-step 0" in text and "AUC" in text
        assert "on the unseen domain" in text and "paired 95% CI" in text
    else:
        assert "TAR @ FAR=1e-2" in text and "| untrained |" in text and "| arcface |" in text
        assert (tmp_path / "gfr_results" / "results.json").exists()
        assert "difference vs arcface" in text
        assert ("SYNTHETIC DATA" in text) == (faces_root_or_none is None)  # a fallback is said loudly
