"""physres.depth: plain and residual stacks; the weight-tied ResNet is forward Euler."""

import math

import pytest
import torch
from torchdiffeq import odeint

import physres
from physres.depth import DeepNet, Stack, alpha_for, first_layer_grad_norm, tanh_block


def _field():
    torch.manual_seed(1)
    return tanh_block(2, 16, dtype=torch.float64)


def test_tied_resnet_is_forward_euler_of_its_block():
    g, T, L = _field(), 1.5, 20
    x0 = torch.randn(8, 2)
    with torch.no_grad():
        res = Stack(g, depth=L, alpha=T / L)(x0)
        euler = physres.rollout(
            physres.steppers.get("euler", lambda t, x: g(x)), x0, dt=T / L, n_steps=L
        )[:, -1]
    torch.testing.assert_close(res, euler, rtol=1e-13, atol=1e-13)


def test_tied_resnet_converges_to_the_neural_ode_at_first_order():
    g, T = _field(), 1.5
    x0 = torch.randn(16, 2)
    with torch.no_grad():
        exact = odeint(lambda t, x: g(x), x0, torch.tensor([0.0, T]), rtol=1e-12, atol=1e-13)[-1]
        errs = [float((Stack(g, depth=L, alpha=T / L)(x0) - exact).norm()) for L in (64, 128, 256)]
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:], strict=False)]
    assert all(abs(p - 1.0) < 0.05 for p in orders), orders


def test_residual_update_with_beta_and_deleted_blocks():
    zero = torch.nn.Linear(3, 3)
    torch.nn.init.zeros_(zero.weight)
    torch.nn.init.zeros_(zero.bias)
    x = torch.randn(4, 3)
    # g = 0: each residual block multiplies by (1 − β)
    out = Stack([zero] * 5, residual=True, alpha=0.7, beta=0.1)(x)
    torch.testing.assert_close(out, x * 0.9**5)
    # a plain stack of g = 0 gives 0; deleting every block gives the identity
    assert torch.equal(Stack([zero] * 3, residual=False)(x), torch.zeros_like(x))
    assert torch.equal(Stack([zero] * 3, residual=False)(x, skip=range(3)), x)


def test_deleting_a_block_equals_the_shorter_network():
    torch.manual_seed(0)
    net = DeepNet(2, 8, 4, alpha=0.5, dtype=torch.float64)
    x = torch.randn(5, 2)
    short = Stack([net.stack.blocks[i] for i in (0, 1, 3)], alpha=0.5)
    torch.testing.assert_close(net(x, skip=(2,)), net.head(short(net.embed(x))))


def test_plain_gradient_vanishes_residual_does_not():
    x, y = torch.randn(64, 2), torch.randn(64, 2)
    torch.manual_seed(0)
    plain = first_layer_grad_norm(DeepNet(2, 16, 48, residual=False, dtype=torch.float64), x, y)
    torch.manual_seed(0)
    scaled = first_layer_grad_norm(
        DeepNet(2, 16, 48, alpha=alpha_for("1/sqrt(L)", 48), dtype=torch.float64), x, y
    )
    # default init of a tanh layer shrinks gradients by ~1/√3 per layer: (1/√3)^48 ≈ 4e-12
    assert plain[0] < 1e-8 * scaled[0]
    assert 1e-2 < scaled[0] / scaled[1] < 1e2


def test_alpha_rules_and_bad_input():
    assert alpha_for("1", 16) == 1.0
    assert alpha_for("1/sqrt(L)", 16) == 0.25
    assert alpha_for("1/L", 16, scale=2.0) == 0.125
    with pytest.raises(ValueError, match="`rule`"):
        alpha_for("1/L^2", 16)
    with pytest.raises(ValueError, match="`depth`"):
        alpha_for("1", 0)
    with pytest.raises(TypeError, match="`depth` is required"):
        Stack(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="does not match"):
        Stack([torch.nn.Linear(2, 2)] * 2, depth=3)
    with pytest.raises(TypeError, match="`blocks`"):
        Stack([])
