import torch

from didi_seq.models.dit import DiT, DiTConfig


def model(time_conditioning=False):
    torch.manual_seed(0)
    m = DiT(DiTConfig(vocab_size=50, length=12, hidden=32, layers=2, heads=2, cond_dim=16,
                      time_conditioning=time_conditioning))
    for p in m.parameters():  # move off the zero init so every path matters
        if p.dim() == 2 and float(p.detach().abs().sum()) == 0:
            torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def test_soft_one_hot_input_equals_ids():
    m = model()
    x = torch.randint(0, 50, (2, 12))
    soft = torch.nn.functional.one_hot(x, 50).float()
    assert torch.allclose(m(x), m(soft), atol=1e-5)


def test_hidden_states_and_masked_head():
    m = model()
    x = torch.randint(0, 50, (2, 12))
    h, c = m.hidden_states(x)
    assert h.shape == (2, 12, 32)
    pos = torch.zeros(2, 12, dtype=torch.bool)
    pos[0, 3] = pos[1, 7] = True
    full = m.head(h, c)
    assert torch.allclose(m.head(h, c, positions=pos), full[pos], atol=1e-6)


def test_time_conditioning_switch():
    x = torch.randint(0, 50, (2, 12))
    s0, s1 = torch.zeros(2), torch.full((2,), 3.0)
    agnostic, conditioned = model(False), model(True)
    assert torch.equal(agnostic(x, s0), agnostic(x, s1))
    assert not torch.allclose(conditioned(x, s0), conditioned(x, s1))


def test_attention_is_bidirectional():
    m = model()
    x = torch.randint(0, 50, (1, 12))
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 50
    assert not torch.allclose(m(x)[0, 0], m(y)[0, 0])  # the last token changes the first output
