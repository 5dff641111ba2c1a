"""The resident data path: every training sample once per epoch, in a seed-dependent order, zero-copy on CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from trainables.data import Split, batch_indices, resident, to_device
from trainables.data_sources import DataConfig, load_dataset
from trainables.loop import train_one_epoch
from trainables.models import build_model

CPU = torch.device("cpu")


def epoch_order(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.cat(list(batch_indices(n, batch_size, generator, CPU)))


@pytest.mark.parametrize(("n", "batch_size"), [(1000, 32), (1000, 1000), (1001, 256), (7, 10_000)])
def test_every_sample_exactly_once_per_epoch(n: int, batch_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = epoch_order(n, batch_size, generator)
        assert torch.equal(torch.sort(order).values, torch.arange(n))


def test_batches_are_contiguous_slices_with_a_short_last_one() -> None:
    sizes = [len(b) for b in batch_indices(1001, 256, torch.Generator().manual_seed(0), CPU)]
    assert sizes == [256, 256, 256, 233]


def test_order_depends_on_the_seed_and_changes_every_epoch() -> None:
    first = epoch_order(5000, 64, torch.Generator().manual_seed(1))
    again = epoch_order(5000, 64, torch.Generator().manual_seed(1))
    other = epoch_order(5000, 64, torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(1)
    epoch1, epoch2 = epoch_order(5000, 64, generator), epoch_order(5000, 64, generator)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(epoch1, epoch2)
    assert not torch.equal(first, torch.arange(5000))  # actually shuffled


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return load_dataset(DataConfig(train_limit=300), seed=0)


def test_a_split_on_the_device_is_the_trials_own_copy(data) -> None:  # noqa: ANN001
    """The object store hands a trial read-only views shared by every trial on the node: to_device copies
    them once, explicitly, so torch is never given a read-only array (its warning stays on, and stays quiet)."""
    images, labels = data.train.images.copy(), data.train.labels.copy()
    images.flags.writeable = labels.flags.writeable = False  # as Ray's object store hands them out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "The given NumPy array is not writable" would fail here
        split = to_device(Split(images, labels), CPU)
    assert split.images.dtype == torch.uint8 and tuple(split.images.shape) == (300, 1, 28, 28)
    assert split.images.data_ptr() != images.ctypes.data and split.labels.data_ptr() != labels.ctypes.data
    assert np.array_equal(split.images.numpy(), images) and np.array_equal(split.labels.numpy(), labels)
    split.images.zero_()  # whatever a trial does to its tensors...
    assert np.array_equal(images, data.train.images)  # ...the dataset is as it was


def test_an_epoch_trains_on_every_sample(data) -> None:  # noqa: ANN001
    split = to_device(data.train, CPU)
    seen: list[torch.Tensor] = []
    model = build_model({"name": "mlp", "hidden": [8]})
    model.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach().clone()))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the inputs, not the learning, are checked
    result = train_one_epoch(model, optimizer, split, 64, lambda x: x.float(), torch.Generator().manual_seed(3))
    batches = torch.cat(seen).to(torch.uint8)
    assert result.samples == 300 and batches.shape[0] == 300
    # Each training image went through the model once: same multiset of images, as sorted byte rows.
    rows = lambda t: sorted(map(bytes, t.reshape(t.shape[0], -1).numpy()))  # noqa: E731
    assert rows(batches) == rows(split.images)


def test_a_large_split_goes_to_a_device_a_chunk_at_a_time(data) -> None:  # noqa: ANN001
    """The chunked copy a GPU gets (the host never holds a second whole copy), forced on the CPU: the same
    tensor as a one-piece copy, and no read-only array handed to torch."""
    images = data.train.images.copy()
    images.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chunked = resident(images, torch.device("cpu"), chunk_bytes=7 * images[0].nbytes)
    assert torch.equal(chunked, torch.from_numpy(data.train.images)) and chunked.data_ptr() != images.ctypes.data
