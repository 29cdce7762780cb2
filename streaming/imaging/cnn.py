"""The ``cnn`` model family's network: a small convolutional network over the fixed-size gray frame, in JAX.

Input: the ``FEATURE_SIZE`` x ``FEATURE_SIZE`` gray array in [0, 1] that silver's features are computed from
(`streaming.imaging.features.fixed_size_gray`), average-pooled to ``INPUT_SIZE`` and z-scored per image (as
the features are: brightness and contrast depend on the device, not on the disease).

Network: ``BLOCKS`` 3x3 convolutions, each followed by group normalisation and a ReLU, strided ones halving
the size; global average pooling; one logit. Group normalisation rather than batch normalisation: it has no
running statistics, so training and inference compute the same function of one image (gold, the pyfunc and
validation agree by construction, whatever the batch). Parameters are a flat dict of numpy arrays (saved
with ``numpy.savez``: no pickle, nothing to download).

JAX is imported inside the functions: the family is an optional extra (``pip install .[cnn]``), and this
module is importable without it (``available`` says whether it is there).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from streaming.imaging.features import FEATURE_SIZE

__all__ = ["BLOCKS", "INPUT_SIZE", "GROUPS", "FAMILY", "CnnClassifier", "available", "missing_reason",
           "model_family", "reads_frames", "input_column", "family_column",
           "init_params", "prepare", "forward", "probabilities", "save_params", "load_params"]

INPUT_SIZE = 64  # 128 pooled by 2: as accurate in our measurements and ~4x cheaper to train and score
BLOCKS = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))  # (channels, stride)
GROUPS = 8
_EPS = 1e-5
INFERENCE_BATCH = 256
FAMILY = "cnn"
PARAMS_FILE = "params.npz"
THRESHOLD_FILE = "threshold.txt"


def model_family(model: object) -> str:
    """The family of a loaded model, the one rule every caller uses (gold, retrain, metrics): ``cnn`` for
    a `CnnClassifier` (its ``family`` attribute), ``sklearn`` for anything else (scikit-learn estimators)."""
    return FAMILY if getattr(model, "family", None) == FAMILY else "sklearn"


def reads_frames(model: object) -> bool:
    """Whether ``model`` reads silver's frames (the cnn family) rather than its feature vectors."""
    return model_family(model) == FAMILY


def input_column(model: object) -> str:
    """The column of ``silver_image_features`` that ``model`` reads: ``frame`` or ``features``; callers
    read only that one (a frame is 16 KB a row, a feature vector about 4 KB)."""
    return family_column(model_family(model))


def family_column(family: str) -> str:
    """The column a model of ``family`` reads (executors know the family, not the model's class)."""
    return "frame" if family == FAMILY else "features"


def missing_reason() -> str | None:
    """Why the family cannot run here (JAX not installed), or None."""
    _configure_threads()
    try:
        import jax  # noqa: F401
    except ImportError:
        return ("the cnn model family needs JAX: pip install 'xray-lakehouse[cnn]' "
                "(or XRAY_EXTRAS=cnn ./setup.sh)")
    return None


def available() -> bool:
    """Whether JAX is installed."""
    return missing_reason() is None


def _configure_threads() -> None:
    # One XLA CPU device using the cores Spark or the user allow; set before JAX's first import only.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")


def prepare(frames: np.ndarray) -> np.ndarray:
    """Frames (n, FEATURE_SIZE, FEATURE_SIZE) of gray levels in any scale (silver's uint8 frames, or floats)
    → network input (n, INPUT_SIZE, INPUT_SIZE, 1) float32: pooled, then z-scored per image, so the scale
    of the levels does not matter (a flat image is all zeros)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[1:] != (FEATURE_SIZE, FEATURE_SIZE):
        raise ValueError(f"expected frames of shape (n, {FEATURE_SIZE}, {FEATURE_SIZE}), got {frames.shape}")
    factor = FEATURE_SIZE // INPUT_SIZE
    n = len(frames)
    pooled = frames.reshape(n, INPUT_SIZE, factor, INPUT_SIZE, factor).mean(axis=(2, 4))
    mean = pooled.mean(axis=(1, 2), keepdims=True)
    std = np.maximum(pooled.std(axis=(1, 2), keepdims=True), 1e-3 * max(float(np.abs(pooled).max()), 1e-6))
    return ((pooled - mean) / std)[..., None].astype(np.float32)


def init_params(seed: int) -> dict[str, np.ndarray]:
    """He-initialised parameters (numpy), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    channels_in = 1
    for index, (channels, _) in enumerate(BLOCKS):
        fan_in = 9 * channels_in
        params[f"conv{index}_w"] = (rng.standard_normal((3, 3, channels_in, channels)) *
                                    np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"conv{index}_b"] = np.zeros(channels, np.float32)
        params[f"norm{index}_scale"] = np.ones(channels, np.float32)
        params[f"norm{index}_bias"] = np.zeros(channels, np.float32)
        channels_in = channels
    params["head_w"] = (rng.standard_normal((channels_in, 1)) * np.sqrt(1.0 / channels_in)).astype(np.float32)
    params["head_b"] = np.zeros(1, np.float32)
    return params


def _group_norm(x, scale, bias):
    import jax.numpy as jnp

    n, h, w, c = x.shape
    grouped = x.reshape(n, h, w, GROUPS, c // GROUPS)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    normalised = ((grouped - mean) * jnp.reciprocal(jnp.sqrt(var + _EPS))).reshape(n, h, w, c)
    return normalised * scale + bias


def forward(params, x):
    """Logits (n,) of P(PNEUMONIA) for prepared input ``x`` (n, INPUT_SIZE, INPUT_SIZE, 1); traceable."""
    import jax
    import jax.numpy as jnp

    for index, (_, stride) in enumerate(BLOCKS):
        x = jax.lax.conv_general_dilated(x, params[f"conv{index}_w"], (stride, stride), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = x + params[f"conv{index}_b"]
        x = jax.nn.relu(_group_norm(x, params[f"norm{index}_scale"], params[f"norm{index}_bias"]))
    pooled = jnp.mean(x, axis=(1, 2))
    return (pooled @ params["head_w"] + params["head_b"])[:, 0]


@functools.lru_cache(maxsize=1)
def _jitted_probabilities():
    _configure_threads()
    import jax

    return jax.jit(lambda params, x: jax.nn.sigmoid(forward(params, x)))


def probabilities(params: dict[str, np.ndarray], frames: np.ndarray, batch: int = INFERENCE_BATCH) -> np.ndarray:
    """P(PNEUMONIA) of each frame (n, FEATURE_SIZE, FEATURE_SIZE), float64, in fixed-size batches (the last
    padded) so XLA compiles one shape only."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        return np.zeros(0)
    predict = _jitted_probabilities()
    out = []
    for start in range(0, len(frames), batch):
        chunk = prepare(frames[start:start + batch])
        size = len(chunk)
        if size < batch:
            pad = min(batch, 1 << max(size - 1, 0).bit_length())  # a few shapes only: 1, 2, 4, ... batch
            chunk = np.concatenate([chunk, np.zeros((pad - size, *chunk.shape[1:]), np.float32)])
        out.append(np.asarray(predict(params, chunk))[:size])
    return np.concatenate(out).astype(np.float64)


def save_params(params: dict[str, np.ndarray], path: str) -> None:
    """Parameters to an ``.npz`` file (arrays only: loading runs no code)."""
    np.savez(path, **{name: np.asarray(value) for name, value in params.items()})


def load_params(path: str) -> dict[str, np.ndarray]:
    """Parameters saved by ``save_params``; checks they fit ``BLOCKS``."""
    with np.load(path, allow_pickle=False) as stored:
        params = {name: stored[name] for name in stored.files}
    expected = set(init_params(0))
    if set(params) != expected:
        raise ValueError(f"{path}: parameters do not match this network ({sorted(set(params) ^ expected)[:3]})")
    return params


class CnnClassifier:
    """The network's parameters plus the threshold at which an image is called PNEUMONIA: what gold scores
    with and what the registered pyfunc loads (`_load_pyfunc`), so both predict the same.

    Takes frames (n, FEATURE_SIZE, FEATURE_SIZE), silver's uint8 ``frame`` column as an array
    (`features.frames_array`): ``predict_proba`` has shape (n, 2), column 1 = P(PNEUMONIA); ``predict`` is 1
    where that is ``>= threshold``. MLflow's pyfunc ``predict`` returns those labels, or P(PNEUMONIA) with
    ``params={"output": "probability"}``.
    """

    family = FAMILY

    def __init__(self, params: dict[str, np.ndarray], threshold: float = 0.5):
        self.params = params
        self.threshold = float(threshold)
        self.classes_ = np.array([0, 1])

    def predict_proba(self, frames: np.ndarray) -> np.ndarray:
        positive = probabilities(self.params, frames)
        return np.stack([1.0 - positive, positive], axis=1)

    def predict(self, frames, params: dict | None = None) -> np.ndarray:
        if isinstance(frames, dict):  # a pyfunc given {"frames": array} (a named tensor input)
            frames = frames["frames"]
        positive = self.predict_proba(np.asarray(frames))[:, 1]
        if (params or {}).get("output") == "probability":
            return positive
        return (positive >= self.threshold).astype(int)

    def get_raw_model(self) -> CnnClassifier:
        """What MLflow's ``PyFuncModel.get_raw_model`` returns: this classifier (`registry.load_model`)."""
        return self

    def save(self, folder: str) -> None:
        """Parameters and threshold into ``folder`` (the pyfunc's data path)."""
        from pathlib import Path

        save_params(self.params, str(Path(folder) / PARAMS_FILE))
        (Path(folder) / THRESHOLD_FILE).write_text(repr(self.threshold))

    def __repr__(self) -> str:
        return f"CnnClassifier(threshold={self.threshold:.4f}, input={INPUT_SIZE}px)"


def _load_pyfunc(data_path: str) -> CnnClassifier:
    """MLflow's ``loader_module`` hook: the classifier saved by ``CnnClassifier.save``."""
    from pathlib import Path

    folder = Path(data_path)
    return CnnClassifier(load_params(str(folder / PARAMS_FILE)), float((folder / THRESHOLD_FILE).read_text()))
