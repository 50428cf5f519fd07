"""xfer-jax: a cost model for tensor programs that learns program and hardware features together.

`xfer_jax.load(path)` returns a Predictor (`xfer_jax.load()`: the default model shipped in the package); it
needs only JAX (no TVM, no training code). JAX is imported on first use, so that `bridge` build workers, which
import `xfer_jax.hardware`, stay light.
"""


def load(path=None):
    """The best model of a checkpoint folder as a `xfer_jax.checkpoint.Predictor`; no path: the shipped default."""
    from .checkpoint import load as load_checkpoint

    return load_checkpoint(path)


__all__ = ["load"]
