"""Language models: config round trip, state continuity, causality, Keras init, bf16 autocast, learning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reverie.errors import ReverieError
from reverie.text.language_model import ModelConfig, receptive_field
from reverie.text.models import ConvLM, RecurrentLM, build_model

VOCAB = 13
KINDS = ("lstm", "gru", "conv")


def tiny(kind: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = {"kind": kind, "vocab_size": VOCAB, "embed": 8, "hidden": 24, "layers": 3, "dropout": 0.2}
    options.update(overrides)
    return build_model(ModelConfig(**options))


def test_config_json_round_trip_rebuilds_same_model():
    config = ModelConfig(
        kind="conv", vocab_size=40, embed=0, hidden=16, layers=2, dropout=0.1, kernel_size=4, init="keras"
    )
    assert ModelConfig.from_json(config.to_json()) == config
    torch.manual_seed(3)
    first = build_model(config).state_dict()
    torch.manual_seed(3)
    second = build_model(ModelConfig.from_json(config.to_json())).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"kind": "gpt2"}, "unknown --model 'gpt2'"),  # the flag users type
        ({"init": "jax"}, "unknown --init"),
        ({"hidden": 0}, "--hidden must be a positive integer"),
        ({"layers": -1}, "--layers must be a positive integer"),
        ({"embed": -2}, "--embed must be"),
        ({"dropout": 1.0}, "--dropout"),
        ({"kind": "conv", "kernel_size": 1}, "--kernel-size"),
    ],
)
def test_bad_config_refused(bad, message):
    options = {"kind": "lstm", "vocab_size": VOCAB} | bad
    with pytest.raises(ReverieError, match=message):
        build_model(ModelConfig(**options))


def test_config_from_incompatible_json_refused():
    with pytest.raises(ReverieError, match="incompatible version"):
        ModelConfig.from_json({"kind": "lstm", "vocab_size": 5, "n_heads": 4})
    with pytest.raises(ReverieError, match="incompatible version"):
        ModelConfig.from_json({"hidden": 5})
    with pytest.raises(ReverieError, match="the model config is invalid .* got '512'.* corrupted"):
        ModelConfig.from_json({"kind": "lstm", "vocab_size": 5, "hidden": "512"})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("embed", [8, 0])
def test_pieces_equal_whole(kind, embed):
    model = tiny(kind, embed=embed).eval()
    tokens = torch.randint(VOCAB, (3, 37), generator=torch.Generator().manual_seed(1))
    whole, _ = model(tokens)
    assert whole.shape == (3, 37, VOCAB)
    pieces, state = [], None
    for start, stop in [(0, 1), (1, 9), (9, 10), (10, 30), (30, 37)]:
        logits, state = model(tokens[:, start:stop], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_causal_future_tokens_change_nothing(kind):
    model = tiny(kind).eval()
    tokens = torch.randint(VOCAB, (2, 20), generator=torch.Generator().manual_seed(2))
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % VOCAB
    before, after = model(tokens)[0], model(changed)[0]
    torch.testing.assert_close(before[:, :12], after[:, :12], atol=0, rtol=0)
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_conv_receptive_field_and_fixed_size_state():
    model = tiny("conv", layers=3, kernel_size=3).eval()
    field = model.receptive_field
    assert field == receptive_field(model.config) == 1 + 2 * (1 + 2 + 4)
    tokens = torch.randint(VOCAB, (1, 40), generator=torch.Generator().manual_seed(3))
    last = 39
    for offset, should_change in [(field, False), (field - 1, True)]:
        changed = tokens.clone()
        changed[0, last - offset] = (changed[0, last - offset] + 1) % VOCAB
        moved = not torch.allclose(model(tokens)[0][0, last], model(changed)[0][0, last])
        assert moved == should_change, offset
    # the cache holds (kernel_size - 1) * dilation columns per layer, however long the input was
    for length in (1, 40):
        _, state = model(tokens[:, :length])
        assert [cache.shape for cache in state] == [(1, 2 * 2**i, 24) for i in range(3)]


@pytest.mark.parametrize("kind", KINDS)
def test_detach_state_cuts_the_graph(kind):
    model = tiny(kind).train()
    tokens = torch.randint(VOCAB, (2, 10))
    _, state = model(tokens)
    leaves = [state] if isinstance(state, torch.Tensor) else list(state)
    assert all(t.requires_grad for t in leaves)
    detached = model.detach_state(state)
    detached_leaves = [detached] if isinstance(detached, torch.Tensor) else list(detached)
    assert all(not t.requires_grad for t in detached_leaves)
    for before, after in zip(leaves, detached_leaves):
        assert torch.equal(before, after)
    logits, _ = model(tokens, detached)
    logits.sum().backward()  # a second chunk trains on from the detached state


def test_keras_init_lstm():
    config = ModelConfig(kind="lstm", vocab_size=VOCAB, embed=0, hidden=16, layers=1, init="keras")
    model = build_model(config)
    rnn, hidden = model.rnn, 16
    expected_ih_bias = torch.zeros(4 * hidden)
    expected_ih_bias[hidden : 2 * hidden] = 1.0  # forget gate (torch gate order i, f, g, o, as Keras)
    assert torch.equal(rnn.bias_ih_l0.detach(), expected_ih_bias)
    assert torch.equal(rnn.bias_hh_l0.detach(), torch.zeros(4 * hidden))
    # recurrent kernel orthogonal: its (4H, H) weight has orthonormal columns
    torch.testing.assert_close(rnn.weight_hh_l0.T @ rnn.weight_hh_l0, torch.eye(hidden), atol=1e-5, rtol=0)
    # glorot-uniform bounds: sqrt(6 / (fan_in + fan_out))
    ih_limit = math.sqrt(6 / (VOCAB + 4 * hidden))
    assert rnn.weight_ih_l0.abs().max() <= ih_limit
    assert rnn.weight_ih_l0.abs().max() > 0.8 * ih_limit
    head_limit = math.sqrt(6 / (hidden + VOCAB))
    assert model.head.weight.abs().max() <= head_limit
    assert torch.equal(model.head.bias.detach(), torch.zeros(VOCAB))


def test_keras_init_gru_and_conv_zero_biases():
    gru = build_model(ModelConfig(kind="gru", vocab_size=VOCAB, hidden=8, layers=2, init="keras"))
    assert all(torch.count_nonzero(p) == 0 for name, p in gru.named_parameters() if "bias" in name)
    assert gru.embedding.weight.abs().max() <= 0.05
    conv = build_model(ModelConfig(kind="conv", vocab_size=VOCAB, hidden=8, layers=2, init="keras"))
    assert torch.equal(conv.norm.weight.detach(), torch.ones(8))  # norms keep their identity init
    assert all(torch.count_nonzero(b.conv.bias) == 0 for b in conv.blocks)


@pytest.mark.parametrize("kind", KINDS)
def test_the_output_bias_starts_at_the_smoothed_log_frequency_of_each_token(kind):
    model = tiny(kind, vocab_size=3)
    model.start_output_bias(torch.tensor([3, 1, 0]))  # add-one: 4/7, 2/7, 1/7
    assert torch.allclose(model.head.bias, torch.tensor([4 / 7, 2 / 7, 1 / 7]).log())
    transformer = tiny("transformer", layers=1, hidden=16, heads=2, dropout=0.0, vocab_size=3)
    before = {name: p.clone() for name, p in transformer.state_dict().items()}
    transformer.start_output_bias(torch.tensor([3, 1, 0]))  # its output has no bias: nothing moves
    assert all(torch.equal(before[name], p) for name, p in transformer.state_dict().items())


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_autocast_gives_close_loss(kind):
    model = tiny(kind, hidden=32).eval()
    tokens = torch.randint(VOCAB, (4, 33), generator=torch.Generator().manual_seed(4))

    def loss() -> torch.Tensor:
        logits, _ = model(tokens[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())

    reference = loss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss()
    assert abs(low.item() - reference.item()) < 0.02 * reference.item()
    # a state made under autocast carries on outside it, in pieces and one token at a time
    whole, _ = model(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = model(tokens[:, :20])
    _, state = model(tokens[:, 20:21], state)
    tail, _ = model(tokens[:, 21:], state)
    torch.testing.assert_close(tail, whole[:, 21:], atol=0.05, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_training_lowers_loss_on_a_repeating_sequence(kind):
    model = tiny(kind, dropout=0.0, layers=2).train()
    pattern = torch.tensor([0, 1, 2, 3, 4, 5, 6, 2, 4, 6])
    tokens = pattern.repeat(4, 5)  # (4, 50)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        logits, _ = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]  # chance level is log(13) = 2.56


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("embed", [8, 0])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("hidden", [24, 8])  # LSTM: hidden 8 < vocab 13 steps without the input table
def test_stepper_continues_like_forward(kind, embed, layers, hidden):
    model = tiny(kind, embed=embed, layers=layers, hidden=hidden).eval()
    tokens = torch.randint(VOCAB, (3, 12), generator=torch.Generator().manual_seed(4))
    whole, _ = model(tokens)
    with torch.inference_mode():
        fresh = model.stepper(None)  # from no state: the first token's logits too
        stepped = torch.stack([fresh(tokens[:, t]) for t in range(12)], dim=1)
        _, state = model(tokens[:, :5])
        resumed = model.stepper(state)
        continued = torch.stack([resumed(tokens[:, t]) for t in range(5, 12)], dim=1)
    torch.testing.assert_close(stepped, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(continued, whole[:, 5:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_in_chunks_equals_the_whole_forward_pass(kind):
    model = tiny(kind, dropout=0.0).eval()
    tokens = torch.randint(VOCAB, (2, 53), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, state = model(tokens)
        last, chunked_state = model.prefill(tokens, chunk=8)  # 7 chunks, the last of 5 tokens
        torch.testing.assert_close(last, logits[:, -1], atol=1e-5, rtol=1e-5)
        next_token = torch.tensor([[3], [4]])
        torch.testing.assert_close(model(next_token, chunked_state)[0], model(next_token, state)[0])


def test_a_state_repeated_for_several_streams_continues_each_the_same():
    for kind in KINDS:
        model = tiny(kind, dropout=0.0).eval()
        with torch.no_grad():
            _, state = model(torch.tensor([[1, 2, 3]]))
            repeated = model.repeat_state(state, 3)
            logits, _ = model(torch.tensor([[5], [5], [5]]), repeated)
            alone, _ = model(torch.tensor([[5]]), state)
        assert all(torch.allclose(logits[i], alone[0], atol=1e-6) for i in range(3)), kind


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "lstm", "embed": 0, "layers": 1},
        {"kind": "lstm", "embed": 8, "layers": 3},
        {"kind": "gru", "embed": 5, "layers": 2},
        {"kind": "conv", "embed": 0, "layers": 2, "kernel_size": 4},
        {"kind": "conv", "embed": 7, "layers": 3},
    ],
)
def test_the_parameter_count_the_size_limit_uses_is_the_models(config):
    full = ModelConfig(vocab_size=VOCAB, hidden=12, **config)
    assert full.num_parameters() == build_model(full).num_parameters()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"hidden": 200_000}, r"--hidden must be a positive integer \(at most 16384\), got 200000"),
        ({"hidden": 16_384, "layers": 64}, "parameters .* more than reverie's limit of 1,000,000,000"),
        (
            {"kind": "conv", "layers": 40},
            "sees 2,199,023,255,551 tokens, more than reverie's limit of 65,536",
        ),
        ({"vocab_size": 10**9}, r"--vocab-size must be a positive integer \(at most 16777216\)"),
    ],
)
def test_a_config_too_big_to_hold_is_refused_before_anything_is_built(bad, message, monkeypatch):
    def never_built(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(RecurrentLM, "__init__", never_built)
    monkeypatch.setattr(ConvLM, "__init__", never_built)
    with pytest.raises(ReverieError, match=message):
        build_model(ModelConfig(**{"kind": "lstm", "vocab_size": VOCAB, **bad}))


def test_an_rnn_without_a_bfloat16_kernel_runs_float32_inside_autocast(monkeypatch):
    # oneDNN on a CPU without AVX-512 raises for a bfloat16 LSTM; the model then recurs in float32
    from reverie.text import models

    monkeypatch.setattr(models, "_NO_LOW_PRECISION_RNN", set())
    model = tiny("lstm", hidden=32).eval()
    tokens = torch.randint(VOCAB, (2, 17), generator=torch.Generator().manual_seed(5))
    real_forward, calls = model.rnn.forward, []

    def forward(inputs, state=None):
        calls.append(inputs.dtype)
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward")
        return real_forward(inputs, state)

    monkeypatch.setattr(model.rnn, "forward", forward)
    reference, _ = model(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, state = model(tokens)
        again, _ = model(tokens)
    assert calls == [torch.float32] * 4  # the second call under autocast goes straight to float32
    assert all(t.dtype == torch.float32 for t in state)
    torch.testing.assert_close(low.float(), reference, atol=0.05, rtol=0)
    torch.testing.assert_close(again, low)
    with pytest.raises(RuntimeError):  # outside autocast an error is not hidden
        model.rnn.forward = lambda inputs, state=None: (_ for _ in ()).throw(RuntimeError("other"))
        model(tokens)
