"""The batch loader's two sources (the memory-mapped cache, and images already held as a tensor, which is how
CUDA runs read them from GPU memory) give the same batches; loss scalars stay where they are."""
import numpy as np
import torch

from nbml.data import Augment, BatchLoader, TensorLoader, to_device_images

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(n=23, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_tensor_source_gives_the_same_batches_as_the_memory_map():
    array = images()
    rows = np.array([3, 7, 1, 0, 22, 5, 9, 14, 2, 8, 11, 19, 4])       # a subset, out of order
    targets = np.arange(len(rows)) % 3
    used = np.unique(rows)                                  # what to_device_images uploads, and the row remap
    tensor, remapped = torch.from_numpy(array[used]), np.searchsorted(used, rows)
    common = dict(bs=4, mean=MEAN, std=STD, device="cpu", shuffle=True, seed=5)
    from_map = batches(BatchLoader(array, rows, targets, **common))
    from_tensor = batches(BatchLoader(tensor, remapped, targets, **common))
    assert len(from_map) == len(from_tensor) == 4          # 13 items, batch 4, last batch kept
    for (xa, ya), (xb, yb) in zip(from_map, from_tensor):
        # the memory-map path sorts each batch by cache row (sequential reads): the same items, in another order
        key = lambda x, y: sorted(zip(y.tolist(), x.flatten(1).sum(1).tolist()))   # noqa: E731
        assert key(xa, ya) == key(xb, yb)
    assert sorted(torch.cat([y for _, y in from_tensor]).tolist()) == sorted(targets.tolist())   # each item once
    # augmented: the same items per batch, transformed; the same seed gives the same batches again
    augment = Augment(max_zoom=1.3, max_shift=0.1, max_rotate=10, flip=True)
    first = batches(BatchLoader(tensor, remapped, targets, augment=augment, **common))
    again = batches(BatchLoader(tensor, remapped, targets, augment=augment, **common))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert all(torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0]) for a, b in zip(first, from_tensor))


def test_unaugmented_batches_are_the_normalised_images():
    array = images(n=6)
    loader = BatchLoader(array, np.arange(6), np.zeros(6), bs=6, mean=MEAN, std=STD, device="cpu")
    (x, _), = list(loader)
    expected = (torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)


def test_scalars_stay_put_and_the_rest_goes_to_the_cpu():
    loader = TensorLoader(torch.zeros(4, 2), torch.zeros(4), bs=2)
    loss = torch.tensor(1.5, requires_grad=True) * 2
    kept = loader.to_detach(loss)
    assert kept.ndim == 0 and not kept.requires_grad and float(kept) == 3.0
    preds = loader.to_detach(torch.ones(3, 2, requires_grad=True))
    assert preds.device.type == "cpu" and not preds.requires_grad


def test_no_gpu_copy_without_cuda():
    assert to_device_images(images(), np.arange(5), "cpu") is None
