"""Augmentation layers (random_flip, random_shift, random_erasing): the identity in eval mode, exact outputs in
training against hand-written NumPy (a per-sample loop as the oracle of the vectorised shift
and of the erased boxes),
backward as the transposed op (central differences with the draws fixed, and the adjoint
identity <backward(g), x> == <g, forward(x)>), reproducible draws, and the command line: listed,
trained through ``python -m nnx.run``, bad arguments refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nnx import experiment
from nnx.augmentation import RandomErasing, RandomFlip, RandomShift
from nnx.config import ConfigError
from nnx.network import Network
from nnx.registry import build
from nnx.run import compose
from nnx.testing import check_component, numerical_gradient

ROOT = Path(__file__).resolve().parent.parent


def built(name, in_shape, seed=0, dtype=np.float64, **kwargs):
    layer = build("layers", name, **kwargs)
    assert layer.build(in_shape, np.random.default_rng(seed), dtype) == tuple(in_shape)
    return layer


def shifted_by_loop(sample: np.ndarray, shift) -> np.ndarray:
    """The oracle: out[c, i] = sample[c, i - shift], 0 outside; one position at a time."""
    out = np.zeros_like(sample)
    for c in range(sample.shape[0]):
        for i in np.ndindex(*sample.shape[1:]):
            source = tuple(a - s for a, s in zip(i, shift))
            if all(0 <= a < n for a, n in zip(source, sample.shape[1:])):
                out[(c, *i)] = sample[(c, *source)]
    return out


# -- eval mode and the trivial settings: x itself -------------------------------------------
@pytest.mark.parametrize("name,kwargs", [("random_flip", {}), ("random_flip", {"p": 1.0}),
                                         ("random_shift", {}), ("random_shift", {"max_shift": 3}),
                                         ("random_erasing", {"p": 1.0})])
def test_eval_mode_is_the_identity_itself(name, kwargs):
    layer = built(name, (2, 5, 6), **kwargs).eval()
    x = np.random.default_rng(1).normal(size=(4, 2, 5, 6))
    g = np.random.default_rng(2).normal(size=x.shape)
    assert layer.forward(x) is x
    assert layer.backward(g) is g


@pytest.mark.parametrize("name,kwargs", [("random_flip", {"p": 0.0}),
                                         ("random_shift", {"max_shift": 0}),
                                         ("random_erasing", {"p": 0.0})])
def test_nothing_to_draw_leaves_x_unchanged_in_training(name, kwargs):
    layer = built(name, (1, 4, 4), **kwargs)
    assert layer.training
    x = np.random.default_rng(3).normal(size=(6, 1, 4, 4))
    assert layer.forward(x) is x
    g = np.ones_like(x)
    assert layer.backward(g) is g


# -- random_flip in training ----------------------------------------------------------------
@pytest.mark.parametrize("axis,shape", [(-1, (2, 5, 6)), (3, (2, 5, 6)), (-2, (2, 5, 6)),
                                        (2, (2, 5, 6)), (-1, (3, 7))])
def test_flip_outputs_by_hand(axis, shape):
    n, seed, p = 40, 7, 0.5
    layer = built("random_flip", shape, seed=seed, axis=axis, p=p)
    x = np.random.default_rng(4).normal(size=(n, *shape))
    y = layer.forward(x)
    # The draws: one uniform number per sample from the generator given to build.
    flipped = np.random.default_rng(seed).random(n) < p
    assert 0 < flipped.sum() < n
    mirrored = np.flip(x, axis)  # for axis -1: x[..., ::-1]
    np.testing.assert_array_equal(y[flipped], mirrored[flipped])
    np.testing.assert_array_equal(y[~flipped], x[~flipped])
    if axis == -1:
        np.testing.assert_array_equal(y[flipped], x[flipped][..., ::-1])
    assert not np.shares_memory(y, x)


def test_flip_with_p_one_flips_every_sample_and_p_sets_the_fraction():
    x = np.random.default_rng(5).normal(size=(30, 1, 4, 5))
    np.testing.assert_array_equal(built("random_flip", (1, 4, 5), p=1.0).forward(x),
                                  x[..., ::-1])
    # 4000 draws at p = 0.3: the fraction's standard deviation is about 0.007.
    layer = built("random_flip", (1, 2, 3), p=0.3)
    z = np.random.default_rng(6).normal(size=(4000, 1, 2, 3))
    fraction = np.mean(np.any(layer.forward(z) != z, axis=(1, 2, 3)))
    assert abs(fraction - 0.3) < 0.035


# -- random_shift in training ----------------------------------------------------------------
@pytest.mark.parametrize("max_shift,shape", [(2, (2, 5, 6)), (1, (1, 4, 4)), (3, (2, 9)),
                                             (6, (1, 3, 4))])  # a shift past the edge: zeros
def test_shift_outputs_against_a_per_sample_loop(max_shift, shape):
    n, seed = 25, 8
    layer = built("random_shift", shape, seed=seed, max_shift=max_shift)
    x = np.random.default_rng(9).normal(size=(n, *shape))
    y = layer.forward(x)
    # The draws: an integer per sample and spatial axis, uniform in [-max_shift, max_shift].
    shifts = np.random.default_rng(seed).integers(-max_shift, max_shift + 1,
                                                  size=(n, len(shape) - 1))
    assert len({tuple(s) for s in shifts}) > 1
    expected = np.stack([shifted_by_loop(x[i], shifts[i]) for i in range(n)])
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == x.dtype and not np.shares_memory(y, x)


def test_shift_draws_cover_the_range_uniformly():
    # A one-hot image tells the shift: the one moves from (2, 2) to (2 + dy, 2 + dx).
    layer = built("random_shift", (1, 5, 5), max_shift=2)
    x = np.zeros((5000, 1, 5, 5))
    x[:, 0, 2, 2] = 1.0
    y = layer.forward(x)
    assert np.all(y.sum(axis=(1, 2, 3)) == 1.0)  # never shifted off: |shift| <= 2
    _, _, rows, cols = np.nonzero(y)
    counts = np.bincount((rows * 5 + cols), minlength=25)
    assert counts.min() > 0.6 * 5000 / 25 and counts.max() < 1.4 * 5000 / 25


def test_shift_in_float32_keeps_its_dtype():
    layer = built("random_shift", (2, 4, 4), dtype=np.float32)
    x = np.random.default_rng(10).normal(size=(3, 2, 4, 4)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32


# -- random_erasing in training --------------------------------------------------------------
def erased_by_loop(x, seed, p, scale, ratio, value):
    """The oracle: the draws in random_erasing's order, then each sample's box one at a time."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    rng = np.random.default_rng(seed)
    erased = rng.random(n) < p
    area = rng.uniform(*scale, n) * h * w
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), n))
    box_h = [min(h, round(float(np.sqrt(a * r)))) for a, r in zip(area, aspect)]
    box_w = [min(w, round(float(np.sqrt(a / r)))) for a, r in zip(area, aspect)]
    top = rng.integers(0, np.array([h - b + 1 for b in box_h]))
    left = rng.integers(0, np.array([w - b + 1 for b in box_w]))
    out = x.copy()
    for i in range(n):
        if erased[i]:
            out[i, :, top[i]:top[i] + box_h[i], left[i]:left[i] + box_w[i]] = value
    return out, erased, np.array(box_h) * np.array(box_w)


@pytest.mark.parametrize("kwargs", [{}, {"p": 1.0, "value": 0.5},
                                    {"p": 0.7, "scale": [0.3, 0.9], "ratio": [0.5, 2.0]}])
def test_erasing_outputs_against_a_per_sample_loop(kwargs):
    n, seed, shape = 50, 23, (2, 9, 7)
    layer = built("random_erasing", shape, seed=seed, **kwargs)
    x = np.random.default_rng(24).normal(size=(n, *shape))
    y = layer.forward(x)
    settings = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3), "value": 0.0, **kwargs}
    expected, erased, areas = erased_by_loop(x, seed, **settings)
    np.testing.assert_array_equal(y, expected)
    assert 0 < erased.sum() and areas[erased].max() > 1  # boxes were drawn, not just pixels
    changed = np.any(y != x, axis=(1, 2, 3))
    assert np.array_equal(changed, erased & (areas > 0))  # only the drawn samples change
    assert not np.shares_memory(y, x)


def test_erased_boxes_cover_the_drawn_fraction_of_the_image():
    # p = 1 and scale [0.1, 0.3]: every image loses 10-30% of its pixels (rounding the sides
    # moves the area a little), on average about a fifth; the box is the same in every channel.
    layer = built("random_erasing", (2, 20, 20), p=1.0, scale=[0.1, 0.3], ratio=[0.5, 2.0])
    y = layer.forward(np.ones((2000, 2, 20, 20)))
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    fraction = 1.0 - y[:, 0].mean(axis=(1, 2))
    assert fraction.min() > 0.06 and fraction.max() < 0.36
    assert abs(fraction.mean() - 0.2) < 0.02


# -- backward: the transposed op -------------------------------------------------------------
CASES = [("random_flip", {}, (2, 3, 4)), ("random_flip", {"axis": -2}, (2, 3, 4)),
         ("random_flip", {"p": 0.7}, (2, 5)), ("random_shift", {}, (2, 4, 5)),
         ("random_shift", {"max_shift": 1}, (1, 6)), ("random_shift", {"max_shift": 3}, (1, 3, 3)),
         ("random_erasing", {"p": 1.0}, (2, 5, 6)), ("random_erasing", {"scale": [0.2, 0.5]}, (1, 6, 6))]
IDS = [f"{name}-{'-'.join(map(str, shape))}-{i}" for i, (name, _, shape) in enumerate(CASES)]


@pytest.mark.parametrize("name", ["random_flip", "random_shift", "random_erasing"])
def test_the_kit_passes(name):
    # Shapes, dtypes, eval-mode gradients, returned arrays owned by the caller; training mode is
    # random, so the kit checks eval mode there (as for dropout) and the tests below training.
    check_component("layers", name)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_training_gradient_by_central_differences_with_the_draws_fixed(name, kwargs, shape):
    seed, n = 11, 6
    x = np.random.default_rng(12).normal(size=(n, *shape))
    w = np.random.default_rng(13).normal(size=x.shape)  # a random upstream gradient

    def loss():
        # Rebuilt from the same seed before every forward: the same draws each time.
        return float(np.sum(w * built(name, shape, seed=seed, **kwargs).forward(x)))

    layer = built(name, shape, seed=seed, **kwargs)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(w.copy()), numerical_gradient(loss, x),
                               rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_backward_is_the_adjoint_of_forward(name, kwargs, shape):
    rng = np.random.default_rng(14)
    layer = built(name, shape, seed=15, **kwargs)
    x, g = rng.normal(size=(8, *shape)), rng.normal(size=(8, *shape))
    y = layer.forward(x)
    dx = layer.backward(g)
    assert np.vdot(dx, x) == pytest.approx(np.vdot(g, y), rel=1e-12)


def test_erasing_to_a_value_has_the_gradient_of_erasing_to_zero():
    # y = x * keep + value * (1 - keep) is affine: the same Jacobian as value 0, checked by
    # central differences with the draws fixed.
    x = np.random.default_rng(25).normal(size=(5, 1, 6, 6))
    w = np.random.default_rng(26).normal(size=x.shape)

    def loss():
        return float(np.sum(w * built("random_erasing", (1, 6, 6), seed=27, value=0.3,
                                      p=1.0).forward(x)))

    layer = built("random_erasing", (1, 6, 6), seed=27, value=0.3, p=1.0)
    y = layer.forward(x)
    assert np.any(y == 0.3)
    np.testing.assert_allclose(layer.backward(w.copy()), numerical_gradient(loss, x),
                               rtol=1e-7, atol=1e-9)


def test_shift_backward_is_the_shift_back():
    layer = built("random_shift", (2, 5, 6), seed=16, max_shift=2)
    rng = np.random.default_rng(17)
    layer.forward(rng.normal(size=(10, 2, 5, 6)))
    g = rng.normal(size=(10, 2, 5, 6))
    shifts = np.random.default_rng(16).integers(-2, 3, size=(10, 2))
    expected = np.stack([shifted_by_loop(g[i], -shifts[i]) for i in range(10)])
    np.testing.assert_array_equal(layer.backward(g), expected)


def test_placed_first_the_layers_before_the_weights_skip_dl_dx():
    net = Network(["random_flip", "random_shift", {"name": "conv2d", "channels": 2, "kernel": 3},
                   "relu", "flatten", {"name": "dense", "units": 3}], in_shape=(1, 6, 6),
                  rng=np.random.default_rng(0))
    assert [net.layers[i].propagate for i in (0, 1, 2, 5)] == [False, False, False, True]
    x = np.random.default_rng(1).normal(size=(4, 1, 6, 6))
    assert net.backward(np.ones_like(net.forward(x))) is None
    assert np.abs(net.layers[2].grads["W"]).sum() > 0  # the convolution's weights still learn


# -- reproducibility -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random_flip", "random_shift", "random_erasing"])
def test_same_seed_same_draws_and_fresh_draws_each_step(name):
    x = np.random.default_rng(18).normal(size=(12, 1, 5, 5))
    a, b, c = (built(name, (1, 5, 5), seed=s) for s in (21, 21, 22))
    ya = a.forward(x)
    np.testing.assert_array_equal(ya, b.forward(x))
    assert not np.array_equal(ya, c.forward(x))
    assert not np.array_equal(ya, a.forward(x))  # the next step draws again


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kwargs,match", [
    (RandomFlip, {"p": 1.5}, r"random_flip: p must be a probability in \[0, 1\], got 1.5"),
    (RandomFlip, {"p": -0.1}, r"random_flip: p must be a probability in \[0, 1\], got -0.1"),
    (RandomFlip, {"p": "half"}, r"random_flip: p must be .* got 'half'"),
    (RandomFlip, {"axis": 1}, r"random_flip: axis must be a spatial axis .* got 1"),
    (RandomFlip, {"axis": 0}, r"random_flip: axis must be a spatial axis .* got 0"),
    (RandomFlip, {"axis": 2.0}, r"random_flip: axis must be a spatial axis .* got 2.0"),
    (RandomShift, {"max_shift": -1}, r"random_shift: max_shift must be an integer >= 0, got -1"),
    (RandomShift, {"max_shift": 1.5}, r"random_shift: max_shift must be an integer >= 0, got 1.5"),
    (RandomShift, {"max_shift": True}, r"random_shift: max_shift must be an integer >= 0, got True"),
    (RandomErasing, {"p": 2}, r"random_erasing: p must be a probability in \[0, 1\], got 2"),
    (RandomErasing, {"scale": [0.5, 0.1]}, (r"random_erasing: scale \(fractions of the image's "
                                           r"area\) must be two numbers lo <= hi in \[0, 1\], "
                                           r"got \[0.5, 0.1\]")),
    (RandomErasing, {"scale": 0.2}, r"random_erasing: scale .* got 0.2"),
    (RandomErasing, {"ratio": [0, 2]}, r"random_erasing: ratio \(box height / width\) must be"),
    (RandomErasing, {"value": "black"}, r"random_erasing: value must be a finite number, got 'black'"),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name,kwargs,shape,match", [
    ("random_flip", {}, (784,), (r"random_flip: expects input \(n, channels, \*spatial\) of rank "
                                 r">= 3, got sample shape \(784,\), that is input \(n, 784\)")),
    ("random_shift", {}, (10,), r"random_shift: expects input .* rank >= 3, got sample shape"),
    ("random_flip", {"axis": -2}, (3, 7), (r"random_flip: axis -2 is not a spatial axis of input "
                                           r"\(n, 3, 7\); its spatial axes are 2 or -1")),
    ("random_flip", {"axis": 4}, (1, 8, 8), (r"axis 4 is not a spatial axis of input "
                                             r"\(n, 1, 8, 8\); its spatial axes are 2 or -2, 3 or "
                                             r"-1")),
    ("random_flip", {"axis": -3}, (1, 8, 8), r"axis -3 is not a spatial axis"),
    ("random_erasing", {}, (3, 7), (r"random_erasing: expects images \(n, channels, height, "
                                    r"width\), got sample shape \(3, 7\), that is input "
                                    r"\(n, 3, 7\)")),
])
def test_bad_shapes_at_build(name, kwargs, shape, match):
    layer = build("layers", name, **kwargs)
    with pytest.raises(ValueError, match=match):
        layer.build(shape, np.random.default_rng(0), np.float64)


def test_wrong_input_at_forward():
    layer = built("random_shift", (1, 6, 6))
    with pytest.raises(ValueError, match=r"random_shift: expects input of shape \(n, 1, 6, 6\), "
                                         r"got \(2, 6, 6\)"):
        layer.forward(np.zeros((2, 6, 6)))


@pytest.mark.parametrize("first,message", [
    ("{name: random_flip, p: 2}", "model.layers.0.p: random_flip: p must be a probability"),
    ("{name: random_shift, max_shift: -2}", "model.layers.0.max_shift: random_shift: max_shift "),
    ("{name: random_flip, axis: -3}", ("model.layers: layer 0 (random_flip): axis -3 is not a "
                                       "spatial axis of input (n, 1, 8, 8)")),
])
def test_bad_configs_fail_before_training(first, message):
    cfg = compose(["experiment=digits_cnn", "tracking=none",
                   f"model.layers=[{first}, flatten, {{name: dense, units: 10}}]"])
    with pytest.raises(ConfigError) as info:
        experiment.build(cfg)
    assert str(info.value).startswith(message)


# -- the command line --------------------------------------------------------------------------
def flow(spec) -> str:
    """A layer spec of conf/ as Hydra's override syntax: relu, {name: conv2d, channels: 16}."""
    if isinstance(spec, str):
        return spec
    return "{" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"


def digits_cnn_with(*first: str) -> str:
    """``model.layers=[...]``: the digits_cnn preset's layers with ``first`` prepended."""
    preset = yaml.safe_load((ROOT / "conf" / "experiment" / "digits_cnn.yaml").read_text())
    return f"model.layers=[{', '.join([*first, *map(flow, preset['model']['layers'])])}]"


def test_listed(nnx_run):
    done = nnx_run(["--kind", "layers"], module="nnx.list")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "mirrored along a spatial axis with probability p" in lines["random_flip"]
    assert "translated by whole pixels" in lines["random_shift"]
    assert "random rectangle set to ``value``" in lines["random_erasing"]


def test_digits_cnn_trains_with_augmentation_prepended(nnx_run):
    layers = digits_cnn_with("random_flip", "{name: random_shift, max_shift: 1}",
                             "{name: random_erasing, scale: [0.05, 0.2]}")
    done = nnx_run(["experiment=digits_cnn", "debug=default", "tracking=none", layers])
    assert done.returncode == 0, done.stderr
    assert "6 steps" in done.stdout + done.stderr  # debug: 2 epochs of 3 batches
    assert "test_accuracy" in done.stdout + done.stderr


def test_a_bad_argument_exits_non_zero_with_one_line(nnx_run):
    done = nnx_run(["experiment=digits_cnn", "debug=default", "tracking=none",
                    digits_cnn_with("{name: random_flip, p: 1.5}")])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [("nnx: error: model.layers.0.p: random_flip: p must be a probability in "
                      "[0, 1], got 1.5"), "(set NNX_DEBUG=1 for the traceback)"]
    assert "Traceback" not in done.stderr and done.stdout == ""
