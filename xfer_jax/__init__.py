"""xfer-jax: a cost model for tensor programs that learns program and hardware features together.

`xfer_jax.load(path)` returns a Predictor; it needs only JAX (no TVM, no training code). JAX is imported on
first use, so that `bridge` build workers, which import `xfer_jax.hardware`, stay light.
"""


def load(path):
    """The best model of a checkpoint folder as a `xfer_jax.checkpoint.Predictor`."""
    from .checkpoint import load as load_checkpoint

    return load_checkpoint(path)


__all__ = ["load"]
