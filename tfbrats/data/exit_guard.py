"""Ending the process cleanly while a tf.data pipeline of patches runs.

tf.data calls `make_patch` from its own threads (tf.numpy_function) and keeps calling it in the
background to fill its buffers. Once the interpreter starts finalizing, Python ends any thread
other than the main one that asks for the GIL: a map call in flight then never completes, and a
thread that starts one is unwound out of TensorFlow's C++ frames. An iterator still referenced at
that point (a script's `it = iter(ds)`) is destroyed during module teardown, and its destructor
waits for those calls forever; a thread unwound mid-call may leave TensorFlow's state broken
(a crash on Ctrl-C). So, at exit (atexit, while every thread can still run Python), each iterator
over a pipeline that is still alive is pointed at an empty dataset: TensorFlow then cancels and
destroys the pipeline's own iterator, waiting with the GIL released for the calls in flight, which
finish. Nothing is left running when the interpreter finalizes.

`tfbrats.data.pipeline.make_dataset` hands every pipeline it builds to `GUARD`.
"""

from __future__ import annotations

import atexit
import gc
import weakref
from typing import Any

import tensorflow as tf


class ExitGuard:
    """The pipelines of this process, and stopping the iterators over them at exit."""

    def __init__(self) -> None:
        self.pipelines: weakref.WeakSet[tf.data.Dataset] = weakref.WeakSet()
        self.registered = False

    def add(self, dataset: tf.data.Dataset) -> None:
        """Remembers a pipeline; the first one registers `end` to run at exit."""
        if not self.registered:
            atexit.register(self.end)
            self.registered = True
        self.pipelines.add(dataset)

    def reaches_pipeline(self, dataset: Any) -> bool:
        """Whether `dataset` is, or is built on, a pipeline this guard holds."""
        stack, seen = [dataset], set()
        while stack:
            current = stack.pop()
            if id(current) in seen or not isinstance(current, tf.data.Dataset):
                continue
            seen.add(id(current))
            if current in self.pipelines:
                return True
            stack.extend(current._inputs())  # the only way from a dataset to its inputs
        return False

    def live_iterators(self) -> list[Any]:
        """The iterators (plain and distributed) over this process's pipelines that are alive."""
        found = []
        for obj in gc.get_objects():
            kind = type(obj)  # not isinstance: a dead weak proxy raises there
            if issubclass(kind, tf.data.Iterator):
                datasets = [getattr(obj, "_dataset", None)]
            elif issubclass(kind, tf.distribute.DistributedIterator):
                datasets = [getattr(worker, "_dataset", None) for worker in getattr(obj, "_iterators", ())]
            else:
                continue
            if any(self.reaches_pipeline(dataset) for dataset in datasets):
                found.append(obj)
        return found

    def end(self) -> int:
        """Stops every live iterator over this process's pipelines (runs at exit, before finalization).

        Returns:
            How many iterators were stopped.

        Example:
            >>> import tempfile
            >>> from tfbrats.data import find_cases, make_dataset
            >>> from tfbrats.data.synthetic import write_synthetic_dataset
            >>> tmp = tempfile.TemporaryDirectory()
            >>> _ = write_synthetic_dataset(tmp.name, cases=1, shape=(48, 48, 32))
            >>> iterator = iter(make_dataset(find_cases(tmp.name).cases, (8, 32, 32), 1))
            >>> _ = next(iterator)
            >>> GUARD.end() >= 1  # the iterator above (and any other alive), now over an empty dataset
            True
            >>> next(iterator)
            Traceback (most recent call last):
            ...
            StopIteration
            >>> tmp.cleanup()
        """
        iterators = self.live_iterators()
        for iterator in iterators:
            stop_iterator(iterator)
        return len(iterators)


def stop_iterator(iterator: Any) -> None:
    """Ends the pipeline under a tf.data or distributed iterator, waiting for its map calls in flight.

    The iterator's resource is re-initialised from an empty dataset of the same structure, so
    TensorFlow cancels and destroys the iterator it held (inside an op, with the GIL released, so
    the calls in flight finish). A plain iterator then ends (StopIteration); a distributed one may
    still hand out the batches already on its devices.

    Example:
        >>> it = iter(tf.data.Dataset.range(5))
        >>> stop_iterator(it)
        >>> list(it)
        []
    """
    from tensorflow.python.data.util import structure
    from tensorflow.python.ops import gen_dataset_ops

    owners = [iterator] if isinstance(iterator, tf.data.Iterator) else [
        worker._iterator for worker in getattr(iterator, "_iterators", ()) if hasattr(worker, "_iterator")]
    for owner in owners:
        specs = structure.get_flat_tensor_specs(owner.element_spec)
        empty = tf.data.Dataset.from_tensor_slices(
            tuple(tf.zeros([0, *(size or 0 for size in spec.shape)], spec.dtype) for spec in specs))
        if hasattr(owner, "_iterator_resource"):  # tf.data's OwnedIterator
            gen_dataset_ops.make_iterator(empty._variant_tensor, owner._iterator_resource)
        elif hasattr(owner, "_multi_device_iterator_resource"):  # the host side of a distributed iterator
            gen_dataset_ops.multi_device_iterator_init(
                empty._variant_tensor, owner._multi_device_iterator_resource, max_buffer_size=1)


GUARD = ExitGuard()
