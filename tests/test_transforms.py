import numpy as np
import pytest

from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.transforms import AUGMENTATIONS, train_transform
from solution.errors import ConfigError


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(image, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


def test_flips_give_one_of_the_eight_dihedral_views_of_all_four_stains():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 4), dtype=np.uint8)
    transform = train_transform("flips")
    for _ in range(10):
        out = transform(image=image)["image"]
        assert any(np.array_equal(out, view) for view in dihedral(image))


@pytest.mark.parametrize("preset", sorted(set(AUGMENTATIONS) - {"none"}))
def test_augmentation_keeps_four_uint8_channels(preset):
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    out = train_transform(preset)(image=image)["image"]
    assert out.shape == (32, 32, 4) and out.dtype == np.uint8


def test_none_and_unknown_presets():
    assert train_transform("none") is None
    with pytest.raises(ConfigError, match="unknown preset 'heavy'; registered: none, flips, light"):
        train_transform("heavy")


@pytest.mark.parametrize("setup, channels", [("rgby", 4), ("g", 1), ("by_ry_g", 3)])
def test_dataset_items_follow_the_channel_setup(setup, channels):
    images = np.full((5, 8, 8, 4), 255, dtype=np.uint8)
    labels = np.eye(28, dtype=np.uint8)[:5]
    ds = HpaDataset(images, np.array([3, 1]), labels, channel_matrix(setup))
    x, y = ds[0]
    assert len(ds) == 2 and x.shape == (channels, 8, 8) and float(x.max()) == pytest.approx(1.0)
    assert y.argmax().item() == 3  # position 3's labels, not row 0's
    _, y_test = HpaDataset(images, np.arange(5), None, channel_matrix(setup))[0]
    assert y_test.sum().item() == 0
