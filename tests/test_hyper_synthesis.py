"""The integer hyper-synthesis must give bit-identical outputs whatever the thread count or the
precision used elsewhere, and stay close to the float network it was made from."""

import torch

from ulic.codec.hyper_synthesis import HyperSynthesis, IntegerHyperSynthesis, integerize


def make(seed=0):
    torch.manual_seed(seed)
    hs = HyperSynthesis(cz=8, n=16, m=8)
    calib = [torch.randint(-6, 7, (1, 8, 3, 5)).float() for _ in range(4)]
    return hs, IntegerHyperSynthesis(integerize(hs, calib, input_scale=1.0), m=8)


def run_with_threads(net, z, n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return net(z)
    finally:
        torch.set_num_threads(old)


def test_exact_across_thread_counts():
    _, hs_int = make()
    z = torch.randint(-6, 7, (1, 8, 6, 9))
    m1, v1 = run_with_threads(hs_int, z, 1)
    m2, v2 = run_with_threads(hs_int, z, 2)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)


def test_exact_against_naive_summation_order():
    """A conv summed in a different order (reversed input channels) gives the same bits."""
    _, hs_int = make()
    z = torch.randint(-6, 7, (1, 8, 4, 4))
    a = hs_int(z)
    flipped = IntegerHyperSynthesis(
        {k.replace("_", ".", 1): (v.flip(1) if k == "0_weight" else v) for k, v in hs_int.state_dict().items()}, m=8
    )
    b = flipped(z.flip(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_close_to_float_network():
    hs, hs_int = make()
    z = torch.randint(-6, 7, (1, 8, 3, 5))
    mf, vf = hs(z.float())
    mi, vi = hs_int(z)
    assert mi.shape == (1, 8, 12, 20)
    assert (mf.double() - mi).abs().max() < 1e-2 * (mf.abs().max() + 1)
    assert (vf.double() - vi).abs().max() < 1e-2 * (vf.abs().max() + 1)


def test_weights_are_integers_within_bits():
    _, hs_int = make()
    w = hs_int.state_dict()["0_weight"]
    assert w.dtype == torch.int32 and int(w.abs().max()) <= 2**15 - 1
