"""Channel setups: a matrix maps the four stains (R, G, B, Y) to the model's input channels.

Each row of a setup is one input channel as a weighted sum of the stains, so
every setup of the original study is a named row set, and a model's input
channel count is its setup's number of rows.
"""

from __future__ import annotations

import numpy as np

from solution.core.registry import Registry

R, G, B, Y = np.eye(4, dtype=np.float32)

CHANNEL_SETUPS: Registry[np.ndarray] = Registry(
    "channels",
    {
        "rgby": np.stack([R, G, B, Y]),
        "rgb": np.stack([R, G, B]),
        "g": np.stack([G]),
        "ry_gy_b": np.stack([(R + Y) / 2, (G + Y) / 2, B]),
        "by_ry_g": np.stack([(B + Y) / 2, (R + Y) / 2, G]),
    },
)


def channel_matrix(name: str) -> np.ndarray:
    """The (C, 4) matrix of a named setup."""
    return CHANNEL_SETUPS[name]


def in_channels(name: str) -> int:
    return channel_matrix(name).shape[0]
