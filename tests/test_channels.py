import numpy as np
import pytest

from solution.core.errors import ConfigError
from solution.data.channels import channel_matrix, in_channels

# One pixel with stains R, G, B, Y = 0.2, 0.4, 0.6, 0.8.
PIXEL = np.array([0.2, 0.4, 0.6, 0.8])


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
    np.testing.assert_allclose(channel_matrix(setup) @ PIXEL, expected, atol=1e-6)
    assert in_channels(setup) == len(expected)


def test_unknown_setup_lists_registered():
    with pytest.raises(ConfigError, match="registered: rgby, rgb, g, ry_gy_b, by_ry_g"):
        channel_matrix("rgbx")
