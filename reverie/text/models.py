"""Language models over token ids: LSTM, GRU and a causal dilated 1-D convnet.

Every model maps token ids (B, T) and a state to next-token logits (B, T, V) and a new state, and
the state continues exactly where the tokens end: feeding a sequence in pieces gives the same
logits as feeding it whole. For the RNNs the state is the hidden state; for the convnet it is the
cached receptive field of each layer, so generating one token costs one column per layer.

    from reverie.text.language_model import ModelConfig
    from reverie.text.models import build_model
    model = build_model(ModelConfig(kind="lstm", vocab_size=65))
    logits, state = model(torch.tensor([[1, 2, 3]]))        # (1, 3, 65)
    logits, state = model(torch.tensor([[4]]), state)      # continues after token 3
    step = model.stepper(state)                            # for generation: one token per call
    logits = step(torch.tensor([5]))                       # (1, 65), continues after token 4
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from reverie.text.language_model import LanguageModel, ModelConfig, State, Stepper, map_state, receptive_field

_NO_LOW_PRECISION_RNN: set[str] = set()  # device types whose RNN kernels refused autocast's dtype


class RecurrentLM(LanguageModel):
    """Stacked LSTM or GRU: embedding (or one-hot) -> RNN -> dropout -> Linear to the vocabulary.

    The input and output projections run as one matmul over the whole (B, T) block; only the
    recurrence is sequential.
    """

    state_batch_dim = 1  # (layers, batch, hidden), as nn.LSTM / nn.GRU keep it

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        rnn_class = nn.LSTM if config.kind == "lstm" else nn.GRU
        self.rnn = rnn_class(
            self.input_size,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            # nn.LSTM/GRU only drop between layers; asking for it with one layer just warns
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.init == "keras":
            self._keras_init()
        self.add_ahead()

    def _keras_init(self) -> None:
        """As the base, plus orthogonal recurrent kernels and (LSTM) forget-gate bias 1."""
        super()._keras_init()
        hidden = self.config.hidden
        for layer in range(self.config.layers):
            nn.init.xavier_uniform_(getattr(self.rnn, f"weight_ih_l{layer}"))
            nn.init.orthogonal_(getattr(self.rnn, f"weight_hh_l{layer}"))
            nn.init.zeros_(getattr(self.rnn, f"bias_ih_l{layer}"))
            nn.init.zeros_(getattr(self.rnn, f"bias_hh_l{layer}"))
            if self.config.kind == "lstm":
                # Keras' unit_forget_bias; torch adds b_ih and b_hh, so only one of them gets the 1
                with torch.no_grad():
                    getattr(self.rnn, f"bias_ih_l{layer}")[hidden : 2 * hidden] = 1.0

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        inputs = self.embed_tokens(tokens)
        # bfloat16 autocast makes nn.LSTM return a bfloat16 state; keep the state in the inputs'
        # dtype so it carries over between calls inside and outside autocast
        state = map_state(state, lambda t: t.to(inputs.dtype))
        output, state = self._recur(inputs, state)
        return output, map_state(state, lambda t: t.to(inputs.dtype))

    def _recur(self, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The recurrence, in autocast's bfloat16 where this machine's library has that kernel, else
        in float32 (oneDNN builds for CPUs without AVX-512 have no bfloat16 LSTM: "could not create
        a primitive descriptor"); the rest of the model keeps the autocast."""
        where = inputs.device.type
        low_precision = torch.is_autocast_enabled(where)
        if not (low_precision and where in _NO_LOW_PRECISION_RNN):
            try:
                return self.rnn(inputs, state)
            except RuntimeError:
                if not low_precision:
                    raise
                _NO_LOW_PRECISION_RNN.add(where)
        with torch.autocast(where, enabled=False):
            return self.rnn(inputs.float(), map_state(state, lambda t: t.float()))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(hidden))

    def stepper(self, state: State) -> Stepper:
        if self.config.kind == "lstm":
            return LSTMStepper(self, state)
        return super().stepper(state)


class LSTMStepper:
    """One-token steps of a stacked LSTM (inference only): nn.LSTM's equations with its weights
    rearranged once, so that a step is one matrix-vector product per layer plus a few pointwise ops
    into buffers allocated once.

    The first layer's input product (plus both biases) is looked up in a (vocab, 4 * hidden) table
    of every token's product when that table is no bigger than W_hh (one-hot input, where it is
    W_ih itself, or a vocabulary no larger than the hidden size: characters); with a larger
    vocabulary (words) the token's embedding is multiplied by W_ih at each step instead. Each later
    layer multiplies [input, h], kept side by side in one buffer, by [W_ih; W_hh] in one product. A
    one-token call to nn.LSTM costs several times this: at this size a step is mostly per-call
    overhead, which is what stateful generation spends its time on.
    """

    def __init__(self, model: RecurrentLM, state: State) -> None:
        rnn, config = model.rnn, model.config

        def weight(name: str, layer: int) -> torch.Tensor:
            return getattr(rnn, f"{name}_l{layer}").detach()

        inputs = model.embedding.weight.detach() if model.embedding is not None else None
        self.first_bias = weight("bias_ih", 0) + weight("bias_hh", 0)
        self.input_weight = weight("weight_ih", 0).t().contiguous()
        self.input_table: torch.Tensor | None = None
        if inputs is None or config.vocab_size <= config.hidden:
            self.input_table = self.first_bias + (
                self.input_weight if inputs is None else inputs @ self.input_weight
            )
        self.embedding = inputs
        self.recurrent = weight("weight_hh", 0).t().contiguous()
        self.stacked = [
            torch.cat([weight("weight_ih", layer), weight("weight_hh", layer)], dim=1).t().contiguous()
            for layer in range(1, config.layers)
        ]
        self.biases = [
            weight("bias_ih", layer) + weight("bias_hh", layer) for layer in range(1, config.layers)
        ]
        self.head_weight = model.head.weight.detach().t().contiguous()
        self.head_bias = model.head.bias.detach()
        self.hidden, self.layers = config.hidden, config.layers
        self.initial = state
        self.h: list[torch.Tensor] = []  # buffers, made at the first step (when the batch is known)

    def _allocate(self, batch: int) -> None:
        hidden, layers = self.hidden, self.layers
        new = lambda width: self.recurrent.new_zeros(batch, width)
        # pairs[l] = [h of layer l-1 | h of layer l]: the input of layer l's product (l >= 1)
        self.pairs = [None] + [new(2 * hidden) for _ in range(1, layers)]
        self.h = [self.pairs[1][:, :hidden] if layers > 1 else new(hidden)]
        self.h += [pair[:, hidden:] for pair in self.pairs[1:]]
        self.c = [new(hidden) for _ in range(layers)]
        if self.initial is not None:
            self._load(self.initial)
        self.gates = [new(4 * hidden) for _ in range(layers)]
        self.sigmoids = [new(4 * hidden) for _ in range(layers)]
        self.scratch = new(hidden)
        # nn.LSTM's gate order: input, forget, cell (g), output
        self.views = [
            (s[:, :hidden], s[:, hidden : 2 * hidden], g[:, 2 * hidden : 3 * hidden], s[:, 3 * hidden :])
            for s, g in zip(self.sigmoids, self.gates)
        ]

    @property
    def state(self) -> State:
        """The state now, (h, c) each (layers, B, hidden), as nn.LSTM's: a copy."""
        return (torch.stack(self.h), torch.stack(self.c)) if self.h else self.initial

    @state.setter
    def state(self, state: State) -> None:
        """Go on from `state` (of the batch the stepper runs; reverie.text.speculative moves each
        stream to its own)."""
        if self.h:
            self._load(state)
        else:
            self.initial = state

    def _load(self, state: State) -> None:
        for layer in range(self.layers):
            self.h[layer].copy_(state[0][layer])
            self.c[layer].copy_(state[1][layer])
            if 1 <= layer < self.layers - 1:
                self.pairs[layer + 1][:, : self.hidden].copy_(self.h[layer])

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) ids -> (B, vocab) next-token logits; the state moves on by one token."""
        if not self.h:
            self._allocate(tokens.shape[0])
        scratch = self.scratch
        for layer in range(self.layers):
            gates = self.gates[layer]
            if layer == 0:
                if self.input_table is not None:
                    torch.index_select(self.input_table, 0, tokens, out=gates)
                else:
                    torch.addmm(self.first_bias, self.embedding[tokens], self.input_weight, out=gates)
                gates.addmm_(self.h[0], self.recurrent)
            else:
                torch.addmm(self.biases[layer - 1], self.pairs[layer], self.stacked[layer - 1], out=gates)
            torch.sigmoid(gates, out=self.sigmoids[layer])  # the g quarter too: one call is cheaper
            input_gate, forget_gate, cell_gate, output_gate = self.views[layer]
            c = self.c[layer].mul_(forget_gate).addcmul_(input_gate, torch.tanh(cell_gate, out=scratch))
            torch.mul(output_gate, torch.tanh(c, out=scratch), out=self.h[layer])
            if 1 <= layer < self.layers - 1:
                self.pairs[layer + 1][:, : self.hidden].copy_(self.h[layer])
        return torch.addmm(self.head_bias, self.h[-1], self.head_weight)


class CausalConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm -> causal dilated conv -> gate -> Linear -> dropout -> +x.

    The gate is WaveNet's tanh(a) * sigmoid(b). The conv is one matmul over its `kernel_size`
    dilated taps stacked along the channels (oldest first): as fast as `conv1d` for training, and
    a plain matrix-vector product when stepping one token (where `conv1d` falls back to a slow
    kernel). The state is the last (kernel_size - 1) * dilation normalized inputs, so a call
    continues exactly where the previous one stopped.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.context = (kernel_size - 1) * dilation
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Linear(kernel_size * channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C), cache (B, context, C) or None (zeros) -> (B, T, C), new cache."""
        h = self.norm(x)
        if cache is None:
            cache = h.new_zeros(h.shape[0], self.context, h.shape[2])
        window = torch.cat([cache.to(h.dtype), h], dim=1)
        length = x.shape[1]
        taps = [window[:, j * self.dilation : j * self.dilation + length] for j in range(self.kernel_size)]
        a, b = self.conv(torch.cat(taps, dim=2)).chunk(2, dim=2)
        return x + self.drop(self.proj(torch.tanh(a) * torch.sigmoid(b))), window[:, -self.context :]


class ConvLM(LanguageModel):
    """Causal dilated 1-D convnet: embedding -> Linear -> blocks (dilation 1, 2, 4, ...) -> LayerNorm
    -> Linear."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.inp = nn.Linear(self.input_size, config.hidden)
        self.blocks = nn.ModuleList(
            CausalConvBlock(config.hidden, config.kernel_size, 2**i, config.dropout)
            for i in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.init == "keras":
            self._keras_init()

    @property
    def receptive_field(self) -> int:
        """How many tokens (the current one included) can influence a prediction."""
        return receptive_field(self.config)

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        x = self.inp(self.embed_tokens(tokens))
        caches = state if state is not None else (None,) * len(self.blocks)
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(x, cache)
            new_caches.append(cache)
        return x, tuple(new_caches)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(hidden))


def _model_class(config: ModelConfig) -> type[LanguageModel]:
    if config.kind == "transformer":
        from reverie.text.transformer import TransformerLM

        return TransformerLM
    return ConvLM if config.kind == "conv" else RecurrentLM


def build_model(config: ModelConfig) -> LanguageModel:
    """The model that `config` describes, freshly initialized (seed torch first for repeatability);
    a dropout left None (one a training run would choose for its budget) is none."""
    if config.dropout is None:
        config = dataclasses.replace(config, dropout=0.0)
    config.validate()
    return _model_class(config)(config)
