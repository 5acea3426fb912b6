import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from solution.core.errors import ConfigError
from solution.data.augment import JitteredGridWarp, StainCLAHE, _linear_weights, train_transform
from solution.data.batch import BatchTransform, fixed_crop, random_crops, random_dihedral
from solution.data.channels import channel_matrix
from solution.data.dataset import HpaDataset
from solution.data.stats import StainStats
from solution.data.transforms import AUGMENTATIONS


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


def dihedral_by_index(x: torch.Tensor) -> torch.Tensor:
    """The batch transform's dihedral step before it went sync-free (one ``nonzero`` per view): the oracle."""
    k = torch.randint(0, 8, (x.shape[0],)).to(x.device)
    out = torch.empty_like(x)
    for t in range(8):
        idx = (k == t).nonzero(as_tuple=True)[0]
        if len(idx):
            view = torch.rot90(x[idx], t % 4, dims=(-2, -1))
            out[idx] = view.flip(-1) if t >= 4 else view
    return out


def transform_by_index(transform: BatchTransform, stains: torch.Tensor) -> torch.Tensor:
    """``BatchTransform(..)(stains, dihedral=True)`` as it was: mix and normalise, then ``dihedral_by_index``."""
    x = torch.einsum("cs,bhws->bchw", transform.weight, stains.float()) + transform.bias[None, :, None, None]
    return dihedral_by_index(x).contiguous()


@pytest.mark.parametrize("setup, seed", [("rgby", 0), ("ry_gy_b", 1), ("g", 2), ("by_ry_g", 3)])
def test_sync_free_batch_transform_gives_the_values_of_the_indexed_one(setup, seed):
    stains = torch.from_numpy(np.random.default_rng(seed).integers(0, 255, (64, 12, 12, 4), dtype=np.uint8))
    stats = StainStats(mean=np.array([90.0, 60, 40, 70]), cov=np.eye(4) * 800 + 100)
    transform = BatchTransform(channel_matrix(setup), stats)
    torch.manual_seed(seed)
    expected = transform_by_index(transform, stains)
    torch.manual_seed(seed)
    assert torch.equal(transform(stains, dihedral=True), expected)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_worker_part_keeps_four_uint8_channels(name):
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    transform = train_transform(name)
    out = image if transform is None else transform(image=image)["image"]
    assert out.shape == (32, 32, 4) and out.dtype == np.uint8


def test_flips_run_on_the_device_only():
    assert train_transform("flips") is None and AUGMENTATIONS["flips"].dihedral and not AUGMENTATIONS["none"].dihedral
    with pytest.raises(ConfigError, match="augment: unknown 'heavy'; registered: none, flips, light"):
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


# The ops of ``strong`` that stand in for one of the original's that albumentations 2.x lacks or that refuses four
# channels: CLAHE, imgaug's PiecewiseAffine, AdditiveGaussianNoise (GaussNoise), Sharpen and Emboss.
REPLACEMENTS = (StainCLAHE, JitteredGridWarp, A.GaussNoise, A.Sharpen, A.Emboss)
# The filters of ``strong``, which should treat each stain as an image of its own.
FILTERS = (StainCLAHE, A.Sharpen, A.Emboss, A.MedianBlur, A.MotionBlur, A.Blur)


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


@pytest.mark.parametrize("preset", sorted(name for name in AUGMENTATIONS if train_transform(name) is not None))
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


def images_of_their_own_brightness(seed: int = 0) -> np.ndarray:
    """Eight images of correlated stains, each of another brightness and contrast (values up to 127)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (8, 12, 12, 1)) + rng.normal(0, [0.3, 1.0, 0.6, 2.0], (8, 12, 12, 4))
    scale, offset = rng.uniform(2, 12, (8, 1, 1, 4)), rng.uniform(20, 60, (8, 1, 1, 4))
    return np.clip(base * scale + offset, 0, 127).astype(np.uint8)


@pytest.mark.parametrize("setup", ["rgby", "ry_gy_b"])
def test_image_normalisation_gives_each_image_mean_0_and_std_1_per_channel(setup):
    stains = torch.from_numpy(images_of_their_own_brightness())
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 70.0**2)  # the dataset's: left unused
    x = BatchTransform(channel_matrix(setup), stats, normalize="image")(stains).double().numpy()
    assert x.shape == (8, len(channel_matrix(setup)), 12, 12)
    np.testing.assert_allclose(x.mean(axis=(2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(2, 3)), 1, atol=1e-4)


def test_image_normalisation_ignores_each_images_brightness_and_survives_a_blank_stain():
    stains = torch.from_numpy(images_of_their_own_brightness())
    stats = StainStats(mean=np.full(4, 127.0), cov=np.eye(4) * 70.0**2)
    transform = BatchTransform(channel_matrix("rgby"), stats, normalize="image")
    brighter = stains * torch.tensor([2, 1, 1, 2], dtype=torch.uint8)[None, None, None]  # per stain, exact
    brighter[1::2] = stains[1::2]  # every other image as it was
    torch.testing.assert_close(transform(brighter), transform(stains), atol=1e-4, rtol=0)
    stains[0, ..., 1] = 9  # a blank green stain: about zeros, not NaN
    x = transform(stains)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x[0, 1], torch.zeros(12, 12), atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    "at, rows", [((0.0, 0.0), [[0, 1], [5, 6]]), ((1.0, 1.0), [[18, 19], [23, 24]]), ((0.5, 0.5), [[6, 7], [11, 12]])]
)
def test_fixed_crop_takes_its_window_by_hand(at, rows):
    assert fixed_crop(torch.arange(25).view(1, 5, 5), 2, at).tolist() == [rows]  # centre: offset 3 // 2 = 1


def positions(n: int, size: int) -> torch.Tensor:
    """``n`` images (size, size, 4) whose every stain holds its pixel's number, row * size + column."""
    return torch.arange(size * size, dtype=torch.uint8).view(1, size, size, 1).expand(n, -1, -1, 4).contiguous()


def test_random_crops_give_each_image_its_own_window_from_the_seeded_generator():
    stains = positions(64, 6)
    torch.manual_seed(0)
    out = random_crops(stains, 4)
    offsets = [divmod(int(window[0, 0, 0]), 6) for window in out]
    assert out.shape == (64, 4, 4, 4) and set(offsets) == {(top, left) for top in range(3) for left in range(3)}
    assert all(torch.equal(w, stains[0, top : top + 4, left : left + 4]) for w, (top, left) in zip(out, offsets))
    torch.manual_seed(0)
    assert torch.equal(random_crops(stains, 4), out)  # a resumed run's generator state draws the same windows


@pytest.mark.parametrize("normalize", ["dataset", "image"])
def test_batch_transform_crops_at_random_in_training_and_at_the_centre_otherwise(normalize):
    """A window of the whole image's model input (an image's statistics are its whole image's)."""
    stains = torch.from_numpy(images_of_their_own_brightness())
    stats = StainStats(mean=np.full(4, 60.0), cov=np.eye(4) * 30.0**2)
    whole = BatchTransform(channel_matrix("rgby"), stats, normalize=normalize)(stains)
    cropped = BatchTransform(channel_matrix("rgby"), stats, normalize=normalize, crop=8)
    torch.testing.assert_close(cropped(stains), whole[..., 2:10, 2:10])
    trained = cropped(stains, random_crop=True)
    assert trained.shape == (8, 4, 8, 8)
    windows = [[whole[i, :, top : top + 8, left : left + 8] for top in range(5) for left in range(5)] for i in range(8)]
    assert all(any(torch.allclose(x, w) for w in windows[i]) for i, x in enumerate(trained))
    assert not torch.allclose(trained, cropped(stains))  # not all at the centre
