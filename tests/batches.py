"""Small synthetic batches for model and training tests."""

import numpy as np


def random_train_batch(num_items: int, batch: int, length: int, seed: int = 0,
                       min_len: int = 2) -> dict[str, np.ndarray]:
    """Right-padded rows shaped like ``genrec_jax.data.sequences.train_arrays``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, length + 1, size=batch)
    seq = rng.integers(1, num_items + 1, size=(batch, length + 1))
    ts = np.cumsum(rng.integers(0, 5000, size=(batch, length + 1)), axis=1) + 1_000_000
    rat = rng.integers(1, 6, size=(batch, length + 1)).astype(np.float32)
    pos = np.arange(length)[None, :]
    valid = pos < lengths[:, None]
    out = {
        "inputs": np.where(valid, seq[:, :-1], 0).astype(np.int32),
        "targets": np.where(valid, seq[:, 1:], 0).astype(np.int32),
        "timestamps": np.where(valid, ts[:, :-1], 0).astype(np.int64),
        "query_timestamps": np.where(valid, ts[:, 1:], 0).astype(np.int64),
        "ratings": np.where(valid, rat[:, :-1], 0).astype(np.float32),
        "target_ratings": np.where(valid, rat[:, 1:], 0).astype(np.float32),
        "weights": valid.astype(np.float32),
        "lengths": lengths.astype(np.int32),
        "user": np.arange(batch, dtype=np.int32),
    }
    return out


def policy_and_reference(config, batch: int, length: int, *, batch_seed: int = 3):
    """``(mesh, graphdef, params, ref_params, batch)`` for post-training step tests: an HSTU of
    ``config`` initialised with seed 0 (the policy) and with seed 1 (the frozen reference) on a
    1×1 mesh, and a random training batch of ``batch`` rows of ``length``."""
    from genrec_jax import sharding as shd
    from genrec_jax.models.hstu import HSTU
    from genrec_jax.train.state import init_params

    mesh = shd.make_mesh(1, 1)
    graphdef, params = init_params(lambda rngs: HSTU(config, rngs=rngs), 0, mesh)
    _, ref = init_params(lambda rngs: HSTU(config, rngs=rngs), 1, mesh)
    rows = random_train_batch(config.num_items, batch, length, seed=batch_seed)
    return mesh, graphdef, params, ref, rows
