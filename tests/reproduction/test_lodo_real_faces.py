"""A small leave-one-domain-out reproduction on the real faces in ../shared/data/faces (skipped when
absent): every method and target in a sane table, and MFR training beats the untrained network
on the unseen target."""

import numpy as np
import pytest

from mfr import FaceData, TrainConfig
from mfr.experiments.evaluate import METRICS
from mfr.experiments.methods import METHODS
from mfr.experiments.reproduce import run_protocol

# Four of the seven domains keep the run short; the unseen target is the Georgia Tech set (low
# resolution, colour, pose and lighting variation), which a random network handles poorly.
DOMAINS = ["georgia_tech_lowres", "att_orl", "essex_faces94", "extended_yaleb_cropped"]
TARGET = "georgia_tech_lowres"


@pytest.mark.slow
def test_small_lodo_on_real_faces(faces_root, tmp_path):
    data = FaceData.from_folder(faces_root).subset(DOMAINS)
    config = TrainConfig(steps=80, input_size=32, channels=3)
    result = run_protocol(
        data,
        "lodo",
        targets=[TARGET],
        methods=METHODS,
        config=config,
        out_dir=tmp_path,
        n_bootstrap=100,
        progress=False,
        log=None,
    )
    summary = result.summary()
    assert set(summary) == {"untrained", *METHODS}
    for method, per_target in summary.items():
        assert set(per_target) == {TARGET}
        for key in METRICS:
            c = per_target[TARGET][key]
            assert np.isfinite(c["mean"]), (method, key)
            assert 0.0 <= c["low"] <= c["mean"] + 1e-9 <= c["high"] + 2e-9 <= 1.0 + 3e-9, (method, key, c)
    assert summary["untrained"][TARGET]["auc"]["mean"] > 0.5  # faces are not random even untrained
    trained, untrained = (
        summary["mfr"][TARGET]["tar@far=1e-2"]["mean"],
        summary["untrained"][TARGET]["tar@far=1e-2"]["mean"],
    )
    assert trained > untrained, (trained, untrained)
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.json").exists()
