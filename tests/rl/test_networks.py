import torch

from ivideogpt.rl.networks import Actor, Critic, Encoder, RandomShift


def test_random_shift_keeps_shape_and_translates():
    x = torch.randint(0, 256, (5, 9, 16, 16), dtype=torch.uint8)
    out = RandomShift(pad=2)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(RandomShift(pad=0)(x), x)
    # every output is an integer translation of its (edge-padded) input
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="replicate")
    for b in range(5):
        assert any(torch.equal(out[b].float(), padded[b, :, dy:dy + 16, dx:dx + 16])
                   for dy in range(5) for dx in range(5))


def test_encoder_actor_critic_shapes():
    enc = Encoder((9, 64, 64), channels=32, layers=4)
    assert enc.repr_dim == 32 * 25 * 25
    h = enc(torch.randint(0, 256, (2, 9, 64, 64), dtype=torch.uint8))
    dist = Actor(enc.repr_dim, 4, 50, 32)(h, std=0.2)
    a = dist.sample(clip=0.3)
    assert a.shape == (2, 4) and a.abs().max() < 1
    q1, q2 = Critic(enc.repr_dim, 4, 50, 32)(h, a)
    assert q1.shape == q2.shape == (2,)
