"""The CIFAR data path: augmentation statistics, mean subtraction, the 45k/5k split, Fashion-MNIST loading, CIFAR's
decoded copy."""

import dataclasses
import gzip
import os

import pytest
import torch

from resnet_repro.config import DataConfig
from resnet_repro.data import small_images
from resnet_repro.data.augment import PAD, CropFlipImages, normalize, random_crop_flip_params
from resnet_repro.data.small_images import (
    DeviceImageData,
    ImageArrays,
    load_cifar,
    load_fashion_mnist,
    paper_split,
    pixel_mean,
)
from resnet_repro.errors import UserError
from support.fake_data import CIFAR10_FOLDER

# Chi-square critical value for 80 degrees of freedom at p = 0.001 (tables; scipy.stats.chi2.ppf(0.999, 80)).
CHI2_80_DOF_P001 = 124.84


def reference_augment(images: torch.Tensor, mean: torch.Tensor, dy, dx, flip) -> torch.Tensor:
    """The paper's augmentation image by image: subtract the mean, zero-pad, crop, mirror."""
    out = []
    for i in range(len(images)):
        padded = torch.nn.functional.pad(images[i].float() / 255 - mean, (PAD,) * 4)
        crop = padded[:, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(out)


def test_batched_crop_flip_matches_a_per_image_computation():
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    mean = images.double().mean(0).float() / 255
    store = CropFlipImages(images, mean)
    index = torch.randperm(300, generator=torch.Generator().manual_seed(2))[:64]
    dy, dx, flip = random_crop_flip_params(64, torch.Generator().manual_seed(1), "cpu")
    assert flip.any() and not flip.all() and len(set(zip(dy.tolist(), dx.tolist()))) > 10
    out = store.batch(index, dy, dx, flip)
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_augment(images[index], mean, dy, dx, flip), rtol=0, atol=1e-6)
    # Every corner offset and both flips, on the first and last stored image (the view's edges).
    edges = torch.tensor([0, 299] * 8)
    offsets = torch.tensor([0, 2 * PAD]).repeat_interleave(8)
    corner_dx = torch.tensor([0, 0, 2 * PAD, 2 * PAD] * 4)
    mirror = torch.tensor([False, True]).repeat(8)
    torch.testing.assert_close(
        store.batch(edges, offsets, corner_dx, mirror),
        reference_augment(images[edges], mean, offsets, corner_dx, mirror),
        rtol=0,
        atol=1e-6,
    )
    torch.testing.assert_close(store.center(index), normalize(images[index], mean), rtol=0, atol=1e-6)


def test_crop_offsets_uniform_over_81_positions_and_flip_rate_half():
    n = 81 * 200
    dy, dx, flip = random_crop_flip_params(n, torch.Generator().manual_seed(0), "cpu")
    counts = torch.bincount(dy * 9 + dx, minlength=81).double()
    assert counts.numel() == 81 and dy.min() == 0 and dy.max() == 2 * PAD
    expected = n / 81
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_80_DOF_P001, f"crop offsets not uniform: chi2={chi2:.1f}"
    rate = flip.double().mean().item()
    assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5  # four standard errors


def test_padding_is_zero_and_image_content_is_kept():
    images = torch.full((500, 3, 32, 32), 255, dtype=torch.uint8)
    dy, dx, flip = random_crop_flip_params(500, torch.Generator().manual_seed(3), "cpu")
    out = CropFlipImages(images, torch.zeros(3, 32, 32)).batch(torch.arange(500), dy, dx, flip)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    visible_rows = 32 - (dy - PAD).abs()
    visible_cols = 32 - (dx - PAD).abs()
    assert torch.equal(out[:, 0].sum((1, 2)).long(), visible_rows * visible_cols)


def test_normalize_subtracts_the_per_pixel_mean():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    mean = images.double().mean(0).float() / 255
    out = normalize(images, mean)
    assert out.mean(0).abs().max() < 1e-5
    torch.testing.assert_close(out[7], images[7].float() / 255 - mean, rtol=0, atol=1e-6)


def test_paper_split_is_disjoint_deterministic_and_45k_5k():
    labels = torch.arange(50_000)
    arrays = ImageArrays(labels.view(-1, 1, 1, 1).to(torch.int32), labels)
    train, val = paper_split(arrays, 5000)
    train2, val2 = paper_split(arrays, 5000)
    assert len(train) == 45_000 and len(val) == 5000
    assert torch.equal(val.labels, val2.labels) and torch.equal(train.labels, train2.labels)
    assert not set(train.labels.tolist()) & set(val.labels.tolist())
    assert set(train.labels.tolist()) | set(val.labels.tolist()) == set(range(50_000))
    assert torch.equal(train.images.view(-1).long(), train.labels)  # images follow their labels


def test_fashion_mnist_loads_padded_to_32(fashion_mnist_dir):
    train = load_fashion_mnist(fashion_mnist_dir, train=True)
    test = load_fashion_mnist(fashion_mnist_dir, train=False)
    assert train.images.shape == (60_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and set(train.labels.unique().tolist()) == set(range(10))
    assert train.images[:, :, :2].max() == 0 and train.images[:, :, :, -2:].max() == 0  # the zero padding
    assert train.images[:, :, 2:30, 2:30].float().mean() > 50  # real pictures inside


def test_device_data_batches_are_a_function_of_seed_and_iteration(fashion_mnist_dir):
    cfg = DataConfig(name="fashion_mnist", root=str(fashion_mnist_dir), batch_size=64, limit_train=4096, limit_test=128)
    data = DeviceImageData(cfg, torch.device("cpu"), seed=0)
    other_seed = DeviceImageData(cfg, torch.device("cpu"), seed=1)
    x5, y5 = data.train_batch(5)
    data.train_batch(100)  # another epoch in between must not matter
    x5_again, y5_again = data.train_batch(5)
    assert torch.equal(x5, x5_again) and torch.equal(y5, y5_again)
    assert not torch.equal(other_seed.train_batch(5)[0], x5)
    assert x5.shape == (64, 3, 32, 32) and data.batches_per_epoch == 4096 // 64
    # One epoch visits every training image once.
    seen = torch.cat([data._epoch_order(0)[i * 64 : (i + 1) * 64] for i in range(data.batches_per_epoch)])
    assert torch.equal(seen.sort().values, torch.arange(4096))
    # Two processes each get half of the same global batch.
    halves = [DeviceImageData(cfg, torch.device("cpu"), seed=0, rank=r, world_size=2).train_batch(5) for r in (0, 1)]
    assert torch.equal(torch.cat([h[0] for h in halves]), x5) and torch.equal(torch.cat([h[1] for h in halves]), y5)
    assert set(data.eval_sets) == {"val", "test"} and len(data.eval_sets["val"]) == 128
    # data.evaluate_test=false (search trials): the same validation images, no test set.
    val_only = DeviceImageData(dataclasses.replace(cfg, evaluate_test=False), torch.device("cpu"), seed=0)
    assert set(val_only.eval_sets) == {"val"} and torch.equal(
        val_only.eval_sets["val"].images, data.eval_sets["val"].images
    )


def test_truncated_fashion_mnist_file_is_a_one_line_error(tmp_path, fashion_mnist_dir):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((fashion_mnist_dir / name).read_bytes())
    data = gzip.compress(gzip.decompress((fashion_mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())[:1000])
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(data)
    with pytest.raises(UserError, match="corrupt Fashion-MNIST file .*t10k-images"):
        load_fashion_mnist(tmp_path, train=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="missing t10k-labels"):
        load_fashion_mnist(tmp_path, train=False)


def test_pixel_mean_is_the_double_mean_bit_for_bit():
    """Summed as integers (numpy), the mean is images.double().mean(0) / 255 exactly, on CIFAR's and a remainder's
    sizes."""
    for n in (50_000, 4_999):
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
        assert torch.equal(pixel_mean(images), (images.double().mean(0) / 255).float())


def age(folder, seconds: float = 3600) -> None:
    """Set the files' modification times `seconds` into the past (a data set unpacked long before the run)."""
    for path in folder.iterdir():
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_cifar_is_read_from_its_decoded_copy_while_the_files_are_unchanged(fake_cifar10, monkeypatch):
    """The first load decodes through torchvision (checksums) and keeps a decoded copy; the next reads the copy
    without torchvision; a file changed since (a flipped byte) is decoded and checked again, and fails the check."""
    root, _ = fake_cifar10
    folder = root / CIFAR10_FOLDER
    age(folder)
    first = load_cifar("cifar10", root, train=True)
    assert (folder / "decoded-v1-train.npz").exists() and not (folder / "decoded-v1-test.npz").exists()

    def no_torchvision(*args):
        raise AssertionError("decoded through torchvision")

    with monkeypatch.context() as m:
        m.setattr(small_images, "decode_cifar", no_torchvision)
        again = load_cifar("cifar10", root, train=True)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.images.dtype == torch.uint8 and again.images.shape == (250, 3, 32, 32)

    data = bytearray((folder / "data_batch_2").read_bytes())
    data[5000] ^= 0xFF
    (folder / "data_batch_2").write_bytes(bytes(data))
    with pytest.raises(UserError, match="cifar10 not found or corrupted"):
        load_cifar("cifar10", root, train=True)


def test_a_decoded_copy_of_just_modified_files_is_not_trusted(fake_cifar10, monkeypatch):
    """Files modified within two seconds of the copy (a modification the file times may not show): decoded again."""
    root, _ = fake_cifar10
    load_cifar("cifar10", root, train=False)  # the fixture has just written the files
    calls = []
    decode = small_images.decode_cifar
    monkeypatch.setattr(small_images, "decode_cifar", lambda *args: calls.append(args) or decode(*args))
    load_cifar("cifar10", root, train=False)
    assert len(calls) == 1
