import albumentations as A
import cv2
import numpy as np
import pytest

from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.transforms import AUGMENTATIONS, JitteredGridWarp, StainCLAHE, _linear_weights, train_transform
from solution.errors import ConfigError

# The ops of ``strong`` that stand in for one of the original's that albumentations 2.x lacks or that refuses four
# channels: CLAHE, imgaug's PiecewiseAffine, AdditiveGaussianNoise (GaussNoise), Sharpen and Emboss.
REPLACEMENTS = (StainCLAHE, JitteredGridWarp, A.GaussNoise, A.Sharpen, A.Emboss)
# The filters of ``strong``, which should treat each stain as an image of its own.
FILTERS = (StainCLAHE, A.Sharpen, A.Emboss, A.MedianBlur, A.MotionBlur, A.Blur)


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    rotations = [np.rot90(image, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


def test_flips_give_one_of_the_eight_dihedral_views_of_all_four_stains():
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 4), dtype=np.uint8)
    transform = train_transform("flips")
    for _ in range(10):
        out = transform(image=image)["image"]
        assert any(np.array_equal(out, view) for view in dihedral(image))


def leaves(transform) -> list:
    """The individual ops of a pipeline, through its nested Compose, OneOf and Sequential."""
    children = getattr(transform, "transforms", None)
    return [leaf for child in children for leaf in leaves(child)] if children is not None else [transform]


def count_applications(ops: list) -> list[int]:
    """Make each op add one to its entry of the returned list whenever it is applied."""
    counts = [0] * len(ops)

    def counting(i: int, apply_with_params):
        def apply(*args, **kwargs):
            counts[i] += 1
            return apply_with_params(*args, **kwargs)

        return apply

    for i, op in enumerate(ops):
        op.apply_with_params = counting(i, op.apply_with_params)
    return counts


def random_stains(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (32, 32, 4), dtype=np.uint8)


@pytest.mark.parametrize("preset", sorted(set(AUGMENTATIONS) - {"none"}))
def test_every_op_of_a_preset_fires_and_keeps_four_uint8_channels(preset):
    transform = train_transform(preset)
    transform.set_random_seed(0)
    ops = leaves(transform)
    fired = count_applications(ops)
    image = random_stains()
    for _ in range(1000):
        out = transform(image=image)["image"]
        assert out.shape == (32, 32, 4) and out.dtype == np.uint8
    assert all(fired), [op for op, n in zip(ops, fired) if not n]


def ops_of_strong(types: tuple[type, ...]) -> list:
    return [op for op in leaves(train_transform("strong")) if isinstance(op, types)]


def op_name(op) -> str:
    return type(op).__name__


@pytest.mark.parametrize("op", ops_of_strong(REPLACEMENTS), ids=op_name)
def test_each_replaced_op_transforms_all_four_stains(op):
    op.p = 1.0
    op.set_random_seed(0)
    image = random_stains()
    out = op(image=image)["image"]
    assert out.shape == (32, 32, 4) and out.dtype == np.uint8
    assert all((out[..., k] != image[..., k]).any() for k in range(4))


@pytest.mark.parametrize("op", ops_of_strong(FILTERS), ids=op_name)
def test_filters_treat_each_stain_as_an_image_of_its_own(op):
    op.p = 1.0
    image = random_stains()
    alone = []
    for k in range(4):
        op.set_random_seed(0)
        alone.append(op(image=image[..., k : k + 1].copy())["image"].reshape(32, 32))
    op.set_random_seed(0)
    assert np.array_equal(op(image=image)["image"], np.stack(alone, axis=-1))


def test_stain_clahe_equalises_each_stain_alone():
    image = random_stains()
    out = StainCLAHE(clip_limit=(2.0, 2.0), p=1.0)(image=image)["image"]
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    assert np.array_equal(out, np.stack([clahe.apply(image[..., k].copy()) for k in range(4)], axis=-1))


def test_grid_warp_interpolates_between_its_points_and_is_the_identity_without_jitter():
    knots, values = np.linspace(0, 31, 4), np.array([3.0, -1.0, 2.0, 5.0])
    assert np.allclose(_linear_weights(32, 4) @ values, np.interp(np.arange(32), knots, values))
    image = random_stains()
    assert np.array_equal(JitteredGridWarp(scale=(0.0, 0.0), p=1.0)(image=image)["image"], image)


def test_none_and_unknown_presets():
    assert train_transform("none") is None
    with pytest.raises(ConfigError, match="unknown preset 'heavy'; registered: none, flips, light, strong$"):
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
