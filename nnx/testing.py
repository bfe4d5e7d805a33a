"""Gradient checks and conformance checks, for nnx's own tests and for plugin authors.

Every check compares an analytic gradient (``backward``) with central differences,
df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h, in float64, and raises AssertionError with
the worst entry when they disagree. A plugin's test suite can be one line per component:

    from nnx.testing import check_component
    def test_my_activation():
        check_component("activations", "my_activation")

``check_component`` also takes the class itself (``check_component("activations", Mish)``),
which checks a component before it is registered. Every check raises AssertionError with a
message naming the component; a component that is not a valid class of its kind (wrong base
class, ``backward`` missing) fails first, with the registry's own explanation. NaN or inf in an
output, a gradient or a loss fails too, naming the component, the argument and the position.
Layers are checked on N-D samples, in training and eval mode, in float32 and float64, with
their buffers and decay flags (see ``nnx.testing_modules``).

A component that cannot be checked on this machine (a dataset whose files are missing) raises
``ComponentUnavailable`` instead: not a failure; a test turns it into a skip with its message.

The kit lives in files by concept, all importable from here: ``testing_gradients`` (numeric
checks), ``testing_registry`` (finding and building a component), ``testing_modules``
(activations, layers), ``testing_components`` (losses, optimizers, initializers, schedules),
``testing_datasets``.
"""

from __future__ import annotations

from nnx.registry import GROUPS, SINGULAR, component_problem
from nnx.testing_components import (
    check_initializer,
    check_loss,
    check_loss_declaration,
    check_optimizer,
    check_schedule,
    loss_inputs,
    loss_targets,
)
from nnx.testing_datasets import DATASET_ARRAYS, check_dataset
from nnx.testing_gradients import (
    assert_close,
    assert_finite,
    assert_unchanged,
    away_from_kinks,
    check_loss_gradient,
    check_module_gradients,
    check_outputs_owned,
    numerical_gradient,
)
from nnx.testing_modules import (
    SAMPLE_SHAPES,
    accepted_shapes,
    check_activation,
    check_layer,
    check_returned_arrays,
)
from nnx.testing_registry import (
    LAYER_EXAMPLES,
    ComponentUnavailable,
    component_class,
    component_label,
    default_instance,
)

__all__ = [
    "DATASET_ARRAYS", "LAYER_EXAMPLES", "SAMPLE_SHAPES", "ComponentUnavailable",
    "accepted_shapes", "assert_close", "assert_finite", "assert_unchanged", "away_from_kinks",
    "check_activation", "check_component", "check_dataset", "check_initializer", "check_layer",
    "check_loss", "check_loss_declaration", "check_loss_gradient", "check_module_gradients",
    "check_optimizer", "check_outputs_owned", "check_returned_arrays", "check_schedule",
    "component_class", "component_label", "default_instance", "loss_inputs", "loss_targets",
    "numerical_gradient",
]


CHECKS = {
    "activations": check_activation,
    "losses": check_loss,
    "optimizers": check_optimizer,
    "layers": check_layer,
    "initializers": check_initializer,
    "schedules": check_schedule,
    "datasets": check_dataset,
}


def check_component(kind: str, component, **kwargs) -> None:
    """The conformance check for one component: a registered name, ``"dist:name"``, or a class.

    First the structural check the registry makes on every plugin (base class, required
    methods), then the behavioural checks of its kind (``CHECKS[kind]``). ``kwargs`` go to
    the component's constructor (a dataset's ``data_dir``).
    """
    if kind not in CHECKS:
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {', '.join(GROUPS)}")
    problem = component_problem(kind, component_class(kind, component))
    if problem:
        raise AssertionError(f"{SINGULAR[kind]} {component_label(kind, component)!r}: {problem}")
    CHECKS[kind](component, **kwargs)
