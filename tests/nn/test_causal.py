from __future__ import annotations

import math

import pytest
import torch

from ldelib.nn.causal import CausalConv1d, PaperCausalNet, ResidualCausalNet, StepCache

# Tolerances derived from rounding: CI reruns these on two threads (LDELIB_TEST_THREADS).
pytestmark = pytest.mark.numerics


def _reference(
    conv: CausalConv1d, x: torch.Tensor, left: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's conv1d of ``x`` left-padded by ``left`` zeros, and its rounding bound.

    Each output sums k * C products and a bias: in any order of summation, within
    gamma_n = n u / (1 - n u) of the exact sum, relative to the sum of the terms'
    magnitudes (the same convolution of |x| by |w|, plus |b|).
    """
    k, c = conv.kernel_size, conv.in_channels
    weight = conv.weight.reshape(conv.out_features, k, c).permute(0, 2, 1)

    def conv1d(v: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(v.transpose(1, 2), (left, 0))
        return torch.nn.functional.conv1d(padded, w, b, dilation=conv.dilation).transpose(1, 2)

    u = torch.finfo(x.dtype).eps / 2
    n = k * c + 1
    magnitude = conv1d(x.abs(), weight.abs(), conv.bias.abs())
    return conv1d(x, weight, conv.bias), n * u / (1 - n * u) * magnitude


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("dilation", [1, 2, 5])
def test_causal_conv_matches_padded_conv1d(kernel_size, dilation):
    conv = CausalConv1d(3, 4, kernel_size, dilation).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    with torch.no_grad():
        expected, bound = _reference(conv, x, left=conv.context)
        # Two sums of the same terms, each within the bound of the exact one.
        assert ((conv(x) - expected).abs() <= 2 * bound).all()


def test_valid_conv_drops_the_padded_outputs():
    conv = CausalConv1d(3, 4, 2, 4, pad=False).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    with torch.no_grad():
        valid = conv(x)
        expected, bound = _reference(conv, x, left=0)  # a valid convolution: no padding
        assert valid.shape == expected.shape == (2, 7, 4)
        assert ((valid - expected).abs() <= 2 * bound).all()
        conv.pad = True
        padded = conv(x)
        assert padded.shape == (2, 11, 4)
        assert ((padded[:, 4:] - expected).abs() <= 2 * bound).all()


@pytest.mark.parametrize("length", [1, 2, 3, 7, 16, 33])
def test_residual_receptive_field_is_exactly_the_past(length):
    net = ResidualCausalNet(length, 2, 5, hidden_channels=8).double()
    x = torch.randn(length, 2, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: net(v.unsqueeze(0))[0], x)
    # jac[t, :, s, :]: output t with respect to input s
    depends = jac.abs().sum(dim=(1, 3)) > 0
    expected = torch.tril(torch.ones(length, length, dtype=torch.bool))
    assert torch.equal(depends, expected)


def test_residual_needs_enough_blocks():
    with pytest.raises(ValueError, match="at least 5"):
        ResidualCausalNet(17, 2, 3, n_blocks=4)


@pytest.mark.parametrize("net_cls", [ResidualCausalNet, PaperCausalNet])
@pytest.mark.parametrize("length", [1, 5, 16])
def test_step_matches_forward(net_cls, length):
    torch.manual_seed(0)
    net = net_cls(length, 2, 6).double().eval()
    n_pad = getattr(net, "n_pad", 1)
    x = torch.randn(4, n_pad + length - 1, 2, dtype=torch.float64)
    full = net(x)
    cache = StepCache(x.shape[1])
    steps = []
    for s in range(x.shape[1]):
        steps.append(net.step(x[:, s], cache))
        cache.advance()
    torch.testing.assert_close(torch.stack(steps, dim=1)[:, -length:], full)


@pytest.mark.parametrize(
    ("length", "n_params"),
    [(8, 11_370), (15, 33_898), (100, 1_496_170), (200, 5_788_778)],
)
def test_paper_network_parameter_counts(length, n_params):
    # K = 30 mixture components: 90 outputs per position (counts from the authors' code).
    net = PaperCausalNet(length, 2, 90)
    assert sum(p.numel() for p in net.parameters()) == n_params


def test_paper_network_shapes():
    for length in [1, 2, 3, 64, 65]:
        net = PaperCausalNet(length, 2, 3)
        pad = 2 ** math.ceil(math.log2(length)) if length > 1 else 1
        assert net.n_pad == pad
        assert net(torch.randn(2, pad + length - 1, 2)).shape == (2, length, 3)
