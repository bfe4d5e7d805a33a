"""The kit's checks of activations and layers. Part of ``nnx.testing`` (import from there).

A layer is checked inside a one-layer network, the way training uses it (its parameters,
gradients and buffers re-pointed into the network's flat buffers), on every sample shape it
accepts among ``SAMPLE_SHAPES`` (and its own ``example["in_shape"]`` when it declares one,
e.g. a convolution's ``(2, 6, 6)``): 1-D, 2-D and 3-D samples. For each: gradients of the input and of
every parameter against central differences with a random upstream gradient, in training and
in eval mode (training mode only when the layer is deterministic there: dropout is not);
float32 and float64 networks (dtype of outputs, gradients and buffers, finite values);
gradients and buffers written in place (else the network's flat buffers would miss them);
buffers left alone in eval mode and never among the parameters; ``decay`` flags that name
parameters; arrays that belong to the caller. Every failure names the layer, the mode, the
dtype, the sample shape and the parameter (``layer 0 (dense): dL/dW``).
"""

from __future__ import annotations

import numpy as np

from nnx.module import batch_shape
from nnx.registry import SINGULAR
from nnx.testing_gradients import (
    assert_finite,
    assert_unchanged,
    away_from_kinks,
    check_module_gradients,
    check_outputs_owned,
)
from nnx.testing_registry import component_class, component_label, default_instance

SAMPLE_SHAPES = ((4,), (3, 4), (2, 3, 4))


def check_activation(name, seed: int = 0, **kwargs) -> None:
    """Gradient (1-D and 3-D samples), finite values, shape, dtype (float32 and float64),
    determinism, and arrays that belong to the caller (``check_outputs_owned``)."""
    rng = np.random.default_rng(seed)
    act = default_instance("activations", name, **kwargs)
    label = f"activation {component_label('activations', name)!r}"
    for shape in ((4,), (2, 3, 4)):
        x = away_from_kinks(rng.normal(size=(5, *shape)) * 2)
        act.build(shape, rng, np.float64)
        on = "" if shape == (4,) else f" on {batch_shape(shape)}"
        check_module_gradients(act, x, name=label + on)
        for dtype in (np.float32, np.float64):
            y = act.forward(x.astype(dtype))
            if y.shape != x.shape or y.dtype != dtype:
                raise AssertionError(f"{label}: {dtype.__name__} input {x.shape} gave {y.dtype} "
                                     f"{y.shape}")
            assert_finite(y, f"{label}: output for {dtype.__name__} input")
            g = act.backward(np.ones_like(y))
            if g.shape != x.shape or g.dtype != dtype:
                raise AssertionError(f"{label}: backward gave {g.dtype} {g.shape}")
            assert_finite(g, f"{label}: dL/dx for {dtype.__name__} input")
        first = act.forward(x).copy()
        if not np.array_equal(first, act.forward(x)):
            raise AssertionError(f"{label}: forward is not deterministic")
    check_returned_arrays("activations", name, seed, **kwargs)


def accepted_shapes(kind: str, name, seed: int = 0, **kwargs) -> list[tuple[int, ...]]:
    """The sample shapes of ``SAMPLE_SHAPES`` (and the module's ``example["in_shape"]``) that
    the module builds on; a ValueError from ``build`` means "not this shape"."""
    cls = component_class(kind, name)
    shapes = list(SAMPLE_SHAPES)
    example = (getattr(cls, "example", None) or {}).get("in_shape")
    if example is not None and tuple(example) not in shapes:
        shapes.insert(0, tuple(example))
    out = []
    for shape in shapes:
        try:
            default_instance(kind, name, **kwargs).build(shape, np.random.default_rng(seed),
                                                         np.float64)
        except ValueError:
            continue
        out.append(shape)
    return out


def check_returned_arrays(kind: str, name, seed: int = 0, **kwargs) -> None:
    """``check_outputs_owned`` for an activation or a layer built from defaults, on its own
    (a layer's ``propagate`` switched on), in training and in eval mode, float64, on every
    sample shape it accepts."""
    label = f"{SINGULAR[kind]} {component_label(kind, name)!r}"
    shapes = accepted_shapes(kind, name, seed, **kwargs) if kind == "layers" else [(4,)]
    for shape in shapes:
        for training in (True, False):
            rng = np.random.default_rng(seed)
            module = default_instance(kind, name, **kwargs)
            module.build(shape, rng, np.float64)
            if hasattr(module, "propagate"):
                module.propagate = True  # see Dense.propagate: dL/dx is what is checked here
            module.train(training)
            x1 = away_from_kinks(rng.normal(size=(5, *shape)) * 2)
            x2 = rng.normal(size=(5, *shape)) * 2
            y = module.forward(x1)
            g1, g2 = rng.normal(size=y.shape), rng.normal(size=y.shape)
            mode = "training" if training else "eval"
            on = "" if shape == (4,) else f", input {batch_shape(shape)}"
            check_outputs_owned(module, x1, g1, x2, g2, f"{label} ({mode} mode{on})")


def _network(name, shape, seed, dtype, kwargs):
    from nnx.network import Network

    layer = default_instance("layers", name, **kwargs)
    return Network([layer], in_shape=shape, rng=np.random.default_rng(seed), dtype=dtype)


def _deterministic(net, x) -> bool:
    """Whether two forward passes on x agree (dropout's do not), buffers restored after."""
    kept = net.flat_buffers.copy()
    same = np.array_equal(net.forward(x), net.forward(x))
    net.flat_buffers[...] = kept
    return same


def check_layer(name, seed: int = 0, in_shape=None, **kwargs) -> None:
    """The conformance check of a layer (see the module docstring). ``in_shape`` checks one
    sample shape only; ``kwargs`` go to the constructor."""
    label = f"layer {component_label('layers', name)!r}"
    shapes = [tuple(in_shape)] if in_shape is not None else accepted_shapes("layers", name, seed,
                                                                            **kwargs)
    if not shapes:
        raise AssertionError(f"{label}: builds on none of the sample shapes "
                             f"{', '.join(map(str, SAMPLE_SHAPES))}; declare the one it takes "
                             "as a class attribute example = {\"in_shape\": (...), \"kwargs\": {...}}")
    for shape in shapes:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(5, *shape))
        for training in (False, True):
            mode = "training" if training else "eval"
            where = f"{label} ({mode} mode, float64, input {batch_shape(shape)})"
            net = _network(name, shape, seed, np.float64, kwargs)
            net.train(training)
            _check_flags(net, where)
            if training and not _deterministic(net, x):
                continue  # random in training (dropout): its eval mode is what is checked
            check_module_gradients(net, x.copy(), name=where)
            _check_in_place(net, x, where)
        for dtype in (np.float32, np.float64):
            _check_dtype(_network(name, shape, seed, dtype, kwargs), x.astype(dtype),
                         f"{label} (input {batch_shape(shape)})")
    check_returned_arrays("layers", name, seed, **kwargs)


def _check_flags(net, where: str) -> None:
    """``decay`` names parameters and says True/False; buffers are not parameters."""
    from nnx.network import leaves

    for path, layer in leaves(net.layers):
        decay = getattr(layer, "decay", {})
        unknown = set(decay) - set(layer.params)
        if unknown:
            raise AssertionError(f"{where}: {layer.name}: decay names {sorted(unknown)}, which "
                                 f"are not parameters ({sorted(layer.params)})")
        for key, flag in decay.items():
            if not isinstance(flag, (bool, np.bool_)):
                raise AssertionError(  # noqa: TRY004 - the kit fails with AssertionError
                    f"{where}: {layer.name}: decay[{key!r}] must be True or "
                    f"False, got {flag!r}")
        both = set(layer.params) & set(layer.buffers)
        if both:
            raise AssertionError(f"{where}: {layer.name}: {sorted(both)} are both parameters "
                                 "and buffers; a buffer is state that is not trained")


def _check_in_place(net, x, where: str) -> None:
    """After forward and backward, every gradient and buffer is still the network's view
    (written in place); in eval mode, forward leaves the buffers unchanged."""
    from nnx.network import leaves

    before = net.flat_buffers.copy()
    out = net.forward(x)
    net.backward(np.ones_like(out))
    for _, layer in leaves(net.layers):
        for kind, arrays, flat in (("gradient", layer.grads, net.flat_grads),
                                   ("buffer", layer.buffers, net.flat_buffers)):
            for key, value in arrays.items():
                if value.size and not np.shares_memory(value, flat):
                    raise AssertionError(
                        f"{where}: {layer.name}: {kind} {key!r} was replaced, not written in "
                        f"place (self.{kind}s[{key!r}][...] = ...); the network keeps every "
                        f"{kind} in one flat buffer and would not see it")
    if not net.training:
        assert_unchanged(net.flat_buffers, before, f"{where}: forward in eval mode changed "
                                                   "the buffers")
    assert_finite(net.flat_buffers, f"{where}: buffers after a training step")


def _check_dtype(net, x, where: str) -> None:
    dtype = net.dtype
    for training in (True, False):
        net.train(training)
        y = net.forward(x)
        what = f"{where}, {dtype.name}, {'training' if training else 'eval'} mode"
        if y.dtype != dtype:
            raise AssertionError(f"{what}: output is {y.dtype}")
        assert_finite(y, f"{what}: output")
        net.backward(np.ones_like(y))
        assert_finite(net.flat_grads, f"{what}: gradients")
    from nnx.network import leaves

    for _, layer in leaves(net.layers):
        for key, value in {**layer.params, **layer.buffers}.items():
            if value.dtype != dtype:
                raise AssertionError(f"{where}: {layer.name}: {key!r} is {value.dtype} in a "
                                     f"{dtype.name} network")
