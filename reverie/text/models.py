"""Language models over token ids: LSTM, GRU and a causal dilated 1-D convnet.

Every model maps token ids (B, T) and a state to next-token logits (B, T, V) and a new state, and
the state continues exactly where the tokens end: feeding a sequence in pieces gives the same
logits as feeding it whole. For the RNNs the state is the hidden state; for the convnet it is the
cached receptive field of each layer, so generating one token costs one column per layer.

    from reverie.text.models import ModelConfig, build_model
    model = build_model(ModelConfig(kind="lstm", vocab_size=65))
    logits, state = model(torch.tensor([[1, 2, 3]]))        # (1, 3, 65)
    logits, state = model(torch.tensor([[4]]), state)      # continues after token 3
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reverie.errors import ReverieError, require, require_positive

KINDS = ("lstm", "gru", "conv")
INITS = ("torch", "keras")

# A model's state: LSTM (h, c), GRU h, conv a tuple of per-layer caches; None means fresh.
State = Any


@dataclass
class ModelConfig:
    """Hyperparameters that rebuild a model exactly; stored as JSON beside its weights."""

    kind: str
    vocab_size: int
    embed: int = 64  # 0 = one-hot input, as in the book
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.0
    kernel_size: int = 3  # conv only; layer i has dilation 2**i
    init: str = "torch"  # "keras": Keras' default initializers (the book preset)

    def validate(self) -> None:
        """Refuse a configuration that cannot build a model, in one line."""
        require(self.kind in KINDS, f"unknown model {self.kind!r}; choose one of {', '.join(KINDS)}")
        require(self.init in INITS, f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        require_positive("vocab_size", self.vocab_size)
        require(self.embed >= 0, f"embed must be 0 (one-hot input) or positive, got {self.embed}")
        require_positive("hidden", self.hidden)
        require_positive("layers", self.layers)
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        if self.kind == "conv":
            require(self.kernel_size >= 2, f"kernel_size must be at least 2, got {self.kernel_size}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "kind" not in data or "vocab_size" not in data:
            raise ReverieError(
                f"model config has unknown or missing keys ({', '.join(unknown) or 'kind/vocab_size'}); "
                "the checkpoint was written by an incompatible version, retrain it"
            )
        config = cls(**data)
        try:
            config.validate()
        except TypeError:
            raise ReverieError(
                f"model config {data} has values of the wrong type; the checkpoint is corrupted"
            ) from None
        return config


def _map_state(state: State, fn) -> State:
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    return type(state)(_map_state(item, fn) for item in state)


class LanguageModel(nn.Module):
    """Base class: `forward(tokens, state) -> (logits, state)` over token ids."""

    config: ModelConfig
    state_batch_dim = 0  # the batch dimension of every tensor in the state (training splits it by rank)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.embed > 0:
            self.embedding: nn.Embedding | None = nn.Embedding(config.vocab_size, config.embed)
        else:
            self.embedding = None

    @property
    def input_size(self) -> int:
        return self.config.embed or self.config.vocab_size

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, input_size) vectors: a learned embedding, or one-hot."""
        if self.embedding is not None:
            return self.embedding(tokens)
        return F.one_hot(tokens, self.config.vocab_size).to(torch.get_default_dtype())

    def detach_state(self, state: State) -> State:
        """Cut the graph behind `state` (truncated backpropagation through time)."""
        return _map_state(state, torch.Tensor.detach)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _keras_init(self) -> None:
        """Keras defaults: glorot-uniform kernels, uniform(+-0.05) embeddings, zero biases.

        Norm layers keep ones and zeros; recurrent weights are set by the subclass.
        """
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.uniform_(module.weight, -0.05, 0.05)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)


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

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        inputs = self.embed_tokens(tokens)
        # bfloat16 autocast makes nn.LSTM return a bfloat16 state; keep the state in the inputs'
        # dtype so it carries over between calls inside and outside autocast
        state = _map_state(state, lambda t: t.to(inputs.dtype))
        if self.config.kind == "lstm" and tokens.shape[1] == 1 and not self.training and tokens.is_cpu:
            # oneDNN's CPU LSTM costs about 10x a plain matrix-vector product per one-token call
            output, state = self._lstm_step(inputs[:, 0], state)
        else:
            output, state = self.rnn(inputs, state)
        return self.head(self.drop(output)), _map_state(state, lambda t: t.to(inputs.dtype))

    def _lstm_step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step of the stacked LSTM with nn.LSTM's weights and equations (no dropout)."""
        if state is None:
            zeros = x.new_zeros(self.config.layers, x.shape[0], self.config.hidden)
            state = (zeros, zeros)
        hs, cs = [], []
        for layer, (h, c) in enumerate(zip(*state)):
            x, c = torch.lstm_cell(  # nn.LSTMCell's fused kernel: the same equations in one call
                x,
                (h, c),
                getattr(self.rnn, f"weight_ih_l{layer}"),
                getattr(self.rnn, f"weight_hh_l{layer}"),
                getattr(self.rnn, f"bias_ih_l{layer}"),
                getattr(self.rnn, f"bias_hh_l{layer}"),
            )
            hs.append(x)
            cs.append(c)
        return x.unsqueeze(1), (torch.stack(hs), torch.stack(cs))


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
    """Causal dilated 1-D convnet: embedding -> Linear -> blocks (dilation 1, 2, 4, ...) -> LayerNorm -> Linear."""

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

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        x = self.inp(self.embed_tokens(tokens))
        caches = state if state is not None else (None,) * len(self.blocks)
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(x, cache)
            new_caches.append(cache)
        return self.head(self.norm(x)), tuple(new_caches)


def build_model(config: ModelConfig) -> LanguageModel:
    """The model that `config` describes, freshly initialized (seed torch first for repeatability)."""
    config.validate()
    if config.kind == "conv":
        return ConvLM(config)
    return RecurrentLM(config)


def receptive_field(config: ModelConfig) -> int | None:
    """Tokens of context a conv model sees (None for the RNNs, whose context is unbounded)."""
    if config.kind != "conv":
        return None
    return 1 + (config.kernel_size - 1) * sum(2**i for i in range(config.layers))
