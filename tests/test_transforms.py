import numpy as np
import pytest
import torch

from solution.data.batch import BatchTransform, StainStats, random_dihedral
from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.transforms import AUGMENTATIONS, preset, train_transform
from solution.errors import ConfigError


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(image, k, axes=(-2, -1)) for k in range(4)]
    return rotations + [r[..., ::-1] for r in rotations]


def test_random_dihedral_gives_each_image_one_of_its_eight_views():
    x = torch.arange(64 * 2 * 5 * 5, dtype=torch.float32).view(64, 2, 5, 5)
    out = random_dihedral(x, torch.Generator().manual_seed(0))
    seen = set()
    for a, b in zip(x.numpy(), out.numpy()):
        matches = [k for k, view in enumerate(dihedral(a)) if np.array_equal(view, b)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_worker_part_keeps_four_uint8_channels(name):
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    transform = train_transform(name)
    out = image if transform is None else transform(image=image)["image"]
    assert out.shape == (32, 32, 4) and out.dtype == np.uint8


def test_flips_run_on_the_device_only():
    assert train_transform("flips") is None and preset("flips").dihedral and not preset("none").dihedral
    with pytest.raises(ConfigError, match="unknown preset 'heavy'; registered: none, flips, light"):
        train_transform("heavy")


def test_dataset_items_are_uint8_stains_of_their_position():
    images = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 4), dtype=np.uint8)
    labels = np.eye(28, dtype=np.uint8)[:5]
    ds = HpaDataset(images, np.array([3, 1]), labels)
    x, y = ds[0]
    assert len(ds) == 2 and x.dtype == torch.uint8 and np.array_equal(x.numpy(), images[3])
    assert y.argmax().item() == 3  # position 3's labels, not row 0's
    _, y_test = HpaDataset(images, np.arange(5), None)[0]
    assert y_test.sum().item() == 0


@pytest.mark.parametrize("setup", ["rgby", "g", "ry_gy_b", "by_ry_g"])
def test_batch_transform_normalises_each_mixed_channel(setup):
    """Correlated stains: each mixed channel comes out with mean 0 and std 1 over the batch."""
    rng = np.random.default_rng(0)
    base = rng.normal(100, 30, (16, 12, 12, 1))
    stains = np.clip(base + rng.normal(0, [5, 20, 10, 40], (16, 12, 12, 4)), 0, 255).astype(np.uint8)
    flat = stains.reshape(-1, 4).astype(np.float64)
    stats = StainStats(mean=flat.mean(0), cov=np.cov(flat.T, bias=True))
    x = BatchTransform(channel_matrix(setup), stats)(torch.from_numpy(stains)).numpy()
    assert x.shape == (16, len(channel_matrix(setup)), 12, 12)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-3)
