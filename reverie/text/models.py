"""Language models over token ids: LSTM, GRU and a causal dilated 1-D convnet.

Every model maps token ids (B, T) and a state to next-token logits (B, T, V) and a new state, and
the state continues exactly where the tokens end: feeding a sequence in pieces gives the same
logits as feeding it whole. For the RNNs the state is the hidden state; for the convnet it is the
cached receptive field of each layer, so generating one token costs one column per layer.

    from reverie.text.models import ModelConfig, build_model
    model = build_model(ModelConfig(kind="lstm", vocab_size=65))
    logits, state = model(torch.tensor([[1, 2, 3]]))        # (1, 3, 65)
    logits, state = model(torch.tensor([[4]]), state)      # continues after token 3
    step = model.stepper(state)                            # for generation: one token per call
    logits = step(torch.tensor([5]))                       # (1, 65), continues after token 4
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reverie.errors import ReverieError, require
from reverie.options import MISSING, check, option

KINDS = ("lstm", "gru", "conv", "transformer")
POSITIONS = ("rotary", "learned")
INITS = ("torch", "keras")
# What a config (a flag, or a run's config.json) may ask for: checked before anything is built.
MAX_WIDTH = 16_384  # --hidden, --embed
MAX_LAYERS = 64
MAX_VOCAB = 1 << 24
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights, and as much again for each optimizer moment
MAX_RECEPTIVE_FIELD = 1 << 16
PREFILL_CHUNK = 1024  # tokens a prompt is read in at a time (memory for one chunk, whatever its length)

# A model's state: LSTM (h, c), GRU h, conv a tuple of per-layer caches; None means fresh.
State = Any
# Continues a sequence one token per call: (B,) ids -> (B, vocab) logits (LanguageModel.stepper).
Stepper = Callable[[torch.Tensor], torch.Tensor]


@dataclass(kw_only=True)
class ModelConfig:
    """Hyperparameters that rebuild a model exactly; stored as JSON beside its weights.

    The fields other than `kind` and `vocab_size` are also `reverie train`'s options of the same
    names (TrainOptions takes them from here with `shape_option`), so their defaults, help and
    bounds are defined once.
    """

    kind: str = option(
        "lstm",
        "model kind (a transformer's own defaults: --layers 4 --heads 4 --hidden 128 --lr 5e-3)",
        choices=KINDS,
    )
    vocab_size: int = option(MISSING, "tokens in the vocabulary", low=1, high=MAX_VOCAB, cli=False)
    embed: int = option(
        64, "token embedding size; 0 feeds one-hot vectors as the book does", low=0, high=MAX_WIDTH
    )
    hidden: int = option(448, "hidden units (conv: channels)", low=1, high=MAX_WIDTH)
    layers: int = option(2, "layers", low=1, high=MAX_LAYERS)
    dropout: float = option(
        0.0, "dropout between layers and before the output", low=0, high=1, high_open=True
    )
    kernel_size: int = option(3, "conv model: kernel size (layer i has dilation 2**i)", low=2, high=64)
    heads: int = option(4, "transformer: attention heads (--hidden must be a multiple)", low=1, high=256)
    context: int = option(
        128, "transformer: tokens it sees, and the length of its training windows", low=2, high=1 << 16
    )
    positions: str = option("rotary", "transformer: rotary or learned position embeddings", choices=POSITIONS)
    init: str = option("torch", "weight initialization: PyTorch's or Keras' defaults", choices=INITS)

    def validate(self) -> None:
        """Refuse a configuration that cannot build a model, or would build one too big to hold
        (checked before any weight is allocated), in one line."""
        check(self)
        if self.kind == "transformer":
            head = self.hidden // self.heads
            require(
                self.hidden % self.heads == 0 and (self.positions != "rotary" or head % 2 == 0),
                f"--hidden {self.hidden} must be a multiple of --heads {self.heads}"
                + (
                    " with an even quotient (rotary positions turn pairs)"
                    if self.positions == "rotary"
                    else ""
                ),
            )
        field = receptive_field(self)
        if field is not None and field > MAX_RECEPTIVE_FIELD:
            raise ReverieError(
                f"a conv model of {self.layers} layers of kernel {self.kernel_size} sees {field:,} tokens, "
                f"more than reverie's limit of {MAX_RECEPTIVE_FIELD:,} (its cache grows with them); "
                "use fewer --layers"
            )
        count = self.num_parameters()
        if count > MAX_PARAMETERS:
            raise ReverieError(
                f"the model would have {count:,} parameters ({4 * count / 1e9:.1f} GB), more than reverie's "
                f"limit of {MAX_PARAMETERS:,}; use a smaller --hidden, --layers or --embed, or fewer words"
            )

    def num_parameters(self) -> int:
        """How many parameters the model has, from its shape alone (nothing is built)."""
        return _model_class(self).parameter_count(self)

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
        except ReverieError as exc:
            raise ReverieError(f"the model config is invalid ({exc}); the checkpoint is corrupted") from None
        return config


def shape_option(name: str, default: Any = MISSING, help: str | None = None) -> Any:
    """A new dataclass field declaring ModelConfig's option `name` (its default, help and bounds),
    for an options class that passes it on to the model; `default` and `help` (if given) replace
    the model's, the bounds stay the model's."""
    source = next(field for field in dataclasses.fields(ModelConfig) if field.name == name)
    metadata = {**source.metadata, **({"help": help} if help is not None else {})}
    return dataclasses.field(default=source.default if default is MISSING else default, metadata=metadata)


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    """`fn` applied to every tensor of a state (nested tuples/lists of tensors; None stays None)."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(item, fn) for item in state)
    return state


def state_tensors(state: State) -> list[torch.Tensor]:
    """Every tensor of a state, in order."""
    found: list[torch.Tensor] = []
    map_state(state, lambda t: found.append(t) or t)
    return found


class LanguageModel(nn.Module):
    """Base class: `forward(tokens, state) -> (logits, state)` over token ids.

    A subclass defines `features` (ids and state to the last hidden layer) and `logits` (that layer
    to next-token logits); `forward` is one then the other, and `prefill` reads a long prompt in
    chunks and runs `logits` on its last position only.
    """

    config: ModelConfig
    state_batch_dim = 0  # the batch dimension of every tensor in the state (training splits it by rank)
    takes_embed = True  # whether --embed sizes an input embedding (the transformer embeds at --hidden)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.embed > 0 and self.takes_embed:
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

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """(B, T) ids and a state -> the last hidden layer (B, T, H) and the state after the tokens."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (..., H) -> next-token logits (..., vocab)."""
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        hidden, state = self.features(tokens, state)
        return self.logits(hidden), state

    def prefill(
        self, tokens: torch.Tensor, state: State = None, chunk: int = PREFILL_CHUNK
    ) -> tuple[torch.Tensor, State]:
        """Read `tokens` (B, T), `chunk` at a time, and return the logits after the last (B, vocab)
        and the state there: forward's last position, in the memory of one chunk whatever T."""
        for start in range(0, tokens.shape[1], chunk):
            hidden, state = self.features(tokens[:, start : start + chunk], state)
        return self.logits(hidden[:, -1]), state

    @staticmethod
    def parameter_count(config: ModelConfig) -> int:
        """The number of parameters a model of `config` has, without building it (what the size
        limit checks; tests hold it against the built model's)."""
        raise NotImplementedError

    def repeat_state(self, state: State, times: int) -> State:
        """A state of batch 1 for `times` streams (each continuing the same text)."""
        return map_state(state, lambda t: t.repeat_interleave(times, dim=self.state_batch_dim))

    def stepper(self, state: State) -> Stepper:
        """A function that continues from `state` one token per call: (B,) ids -> (B, vocab)
        logits, keeping the state itself (inference only: run it under torch.inference_mode).
        Feeding it tokens gives the logits `forward` gives for the same tokens."""
        return ForwardStepper(self, state)

    def detach_state(self, state: State) -> State:
        """Cut the graph behind `state` (truncated backpropagation through time)."""
        return map_state(state, torch.Tensor.detach)

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


class ForwardStepper:
    """The generic stepper: `forward` on one token, keeping the state it returns."""

    def __init__(self, model: LanguageModel, state: State) -> None:
        self.model, self.state = model, state

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.model(tokens[:, None], self.state)
        return logits[:, 0]


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

    @staticmethod
    def parameter_count(config: ModelConfig) -> int:
        gates = 4 if config.kind == "lstm" else 3
        size, hidden = config.embed or config.vocab_size, config.hidden
        recurrent = gates * hidden * (size + hidden + 2) + (config.layers - 1) * gates * hidden * (
            2 * hidden + 2
        )
        return config.vocab_size * config.embed + recurrent + (hidden + 1) * config.vocab_size

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
            for layer in range(layers):
                self.h[layer].copy_(self.initial[0][layer])
                self.c[layer].copy_(self.initial[1][layer])
                if 1 <= layer < layers - 1:
                    self.pairs[layer + 1][:, :hidden].copy_(self.h[layer])
        self.gates = [new(4 * hidden) for _ in range(layers)]
        self.sigmoids = [new(4 * hidden) for _ in range(layers)]
        self.scratch = new(hidden)
        # nn.LSTM's gate order: input, forget, cell (g), output
        self.views = [
            (s[:, :hidden], s[:, hidden : 2 * hidden], g[:, 2 * hidden : 3 * hidden], s[:, 3 * hidden :])
            for s, g in zip(self.sigmoids, self.gates)
        ]

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

    @staticmethod
    def parameter_count(config: ModelConfig) -> int:
        size, hidden, k = config.embed or config.vocab_size, config.hidden, config.kernel_size
        block = 2 * hidden + (k * hidden + 1) * 2 * hidden + (hidden + 1) * hidden
        head = 2 * hidden + (hidden + 1) * config.vocab_size
        return config.vocab_size * config.embed + (size + 1) * hidden + config.layers * block + head

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
    """The model that `config` describes, freshly initialized (seed torch first for repeatability)."""
    config.validate()
    return _model_class(config)(config)


def receptive_field(config: ModelConfig) -> int | None:
    """Tokens of context a conv model sees (None for the RNNs, whose context is unbounded)."""
    if config.kind != "conv":
        return None
    return 1 + (config.kernel_size - 1) * sum(2**i for i in range(config.layers))
