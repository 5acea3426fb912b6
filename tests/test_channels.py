import numpy as np
import pytest

from solution.data.channels import CHANNEL_SETUPS, channel_matrix, in_channels, to_model_input

# One pixel with stains R, G, B, Y = 51, 102, 153, 204 (0.2, 0.4, 0.6, 0.8 after scaling).
PIXEL = np.array([51, 102, 153, 204], dtype=np.uint8).reshape(1, 1, 4)


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("rgby", [0.2, 0.4, 0.6, 0.8]),
        ("rgb", [0.2, 0.4, 0.6]),
        ("g", [0.4]),
        ("ry_gy_b", [0.5, 0.6, 0.6]),  # (R+Y)/2, (G+Y)/2, B
        ("by_ry_g", [0.7, 0.5, 0.4]),  # (B+Y)/2, (R+Y)/2, G
    ],
)
def test_setups_by_hand(setup, expected):
    x = to_model_input(PIXEL, channel_matrix(setup))
    assert x.shape == (len(expected), 1, 1)
    np.testing.assert_allclose(x[:, 0, 0], expected, atol=1e-6)
    assert in_channels(setup) == len(expected)


def test_unknown_setup_lists_known():
    with pytest.raises(KeyError, match="known: rgby"):
        channel_matrix("rgbx")


def test_config_choices_match_setups():
    from solution.config import CHOICES

    assert set(CHOICES["channels"]) == set(CHANNEL_SETUPS)
