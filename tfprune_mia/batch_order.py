"""The order training batches are drawn in: a function of (seed, pass) alone, so a run resumed in another process
sees the same batches as an uninterrupted one (training, stacked training and the attack models share it)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from tfprune_mia.backend import tf


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: Optional[int] = None):
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def epoch_stream(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, start_batch: int = 0):
    """An endless stream of shuffled training batches whose pass p is ordered by (seed, p) alone.

    `Dataset.shuffle` draws each epoch's order from a hidden RNG state that a resumed process does not have,
    so a run resumed from an epoch checkpoint trained on other batches than an uninterrupted one. Here batch
    b of the stream is the same in every process, and a resume at epoch e starts at e * steps_per_epoch.
    """
    per_pass = -(-len(y) // batch_size)
    xs, ys = tf.constant(x), tf.constant(y)

    def one_pass(index):
        return tf.data.Dataset.from_tensor_slices(pass_order(len(y), seed, index)).batch(batch_size)

    batches = tf.data.Dataset.counter(start_batch // per_pass).flat_map(one_pass).skip(start_batch % per_pass)
    return batches.map(lambda index: (tf.gather(xs, index), tf.gather(ys, index)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def pass_order(num_samples: int, seed, index) -> tf.Tensor:
    """The sample order of pass `index` over the training set, a function of (seed, index) alone, so a
    resumed process and an uninterrupted one see the same batches (works eagerly and inside a graph)."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([num_samples], seed=key))
