"""Contract tests for every registered stepper, read from the registry: a stepper added
tomorrow is tested the day it is added."""

import pytest
import torch
from problems import problem_for

from physres import steppers


@pytest.mark.parametrize("name", steppers.names())
def test_shape_dtype_and_batch_independence(name):
    field, x0 = problem_for(name)
    step = steppers.get(name, field)
    batch = step(x0, 0.1, 0.05)
    assert batch.shape == x0.shape and batch.dtype == x0.dtype
    assert bool(torch.isfinite(batch).all())
    single = torch.cat(
        [steppers.get(name, field)(x0[i : i + 1], 0.1, 0.05) for i in range(x0.shape[0])]
    )
    torch.testing.assert_close(batch, single, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", steppers.names())
def test_declared_attributes(name):
    cls = steppers.REGISTRY.resolve(name)
    assert isinstance(cls.order, int) and cls.order >= 1
    assert isinstance(cls.explicit, bool) and isinstance(cls.general, bool)
    assert cls.name == name and cls.__doc__


@pytest.mark.parametrize("name", steppers.names())
def test_gradcheck_through_one_step(name):
    field, x0 = problem_for(name)
    step = steppers.get(name, field)
    x0 = x0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: step(x, 0.2, 0.05), (x0,), atol=1e-6)


@pytest.mark.parametrize("name", steppers.names())
def test_public_step_is_the_unchecked_call(name):
    field, x0 = problem_for(name)
    checked = steppers.get(name, field)(x0, 0.1, 0.05)
    step = steppers.get(name, field)
    step.check_call(x0, 0.05)
    torch.testing.assert_close(step.step(x0, 0.1, 0.05), checked, rtol=0, atol=0)
    cls = steppers.REGISTRY.resolve(name)
    assert cls.step is steppers.Stepper.step and cls.forward is steppers.Stepper.forward
    with pytest.raises(ValueError, match="`dt`"):
        step(x0, 0.1, -0.05)  # the call checks; `step` is the raw hook for inner loops
