"""Confidence calibration of random-weight models (models/calibrate.py)."""
import pytest
import torch

from models import load_model
from models.calibrate import calibrate_confidence_, confident_share, scale_for_share


def test_scale_for_share_hits_the_target_on_gaussian_logits():
    torch.manual_seed(0)
    z = torch.randn(400, 1000)
    for share in (0.2, 0.5, 0.8):
        s = scale_for_share(z, share, tau=0.9)
        assert abs(confident_share(z * s, 0.9) - share) <= 0.01
    assert confident_share(z, 0.9) == 0.0   # unscaled random logits are flat


def test_scale_for_share_rejects_a_share_outside_0_1():
    with pytest.raises(ValueError, match="confident share must lie in"):
        scale_for_share(torch.zeros(2, 3), 1.0)


@pytest.mark.parametrize("name", ["llada-tiny", "dream-tiny"])
def test_calibrated_random_model_is_confident_on_the_asked_share_and_keeps_its_argmax(name):
    m = load_model(name, no_weights=True, seed=0)
    ids = torch.full((2, 48), m.mask_id)
    ids[:, :16] = torch.arange(32).view(2, 16) + 3
    before = m.forward(ids).logits
    cal = calibrate_confidence_(m, ids, share=0.5, tau=0.9)
    after = m.forward(ids).logits
    masked = ids == m.mask_id
    assert cal.scale > 1 and cal.positions == int(masked.sum())
    assert abs(cal.measured_share - 0.5) <= 0.05
    assert cal.measured_share == pytest.approx(confident_share(after[masked], 0.9))
    assert torch.equal(before.argmax(-1), after.argmax(-1))
    assert m.info["confidence"]["target_share"] == 0.5
