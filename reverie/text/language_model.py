"""What every language model shares: its configuration, its base class, its state.

`ModelConfig` is a model's shape (also `reverie train`'s flags of the same names: a training run's
options hold one, `TrainOptions.model`) with its size limits, checked before anything is built;
`LanguageModel` is the base class of the LSTM, GRU and conv models (`models.py`) and the transformer
(`transformer.py`); a state is nested tuples of tensors (`map_state`, `state_tensors`).
`models.build_model` builds a model.

    from reverie.text.language_model import ModelConfig
    config = ModelConfig(kind="conv", vocab_size=65)
    config.validate()                  # its limits, from the shape alone: nothing is built
    config.num_parameters()            # as many as models.build_model(config) will have
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
from reverie.options import check, option

KINDS = ("lstm", "gru", "conv", "transformer")
POSITIONS = ("rotary", "learned")
INITS = ("torch", "keras")
# What a config (a flag, or a run's config.json) may ask for: checked before anything is built.
MAX_WIDTH = 16_384  # --hidden, --embed
MAX_LAYERS = 64
MAX_VOCAB = 1 << 24
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights, and as much again for each optimizer moment
MAX_RECEPTIVE_FIELD = 1 << 16
MAX_PREDICT = 16  # --predict: tokens each position predicts
PREDICT_KINDS = ("transformer", "lstm", "gru")  # the models with extra heads for --predict
PREFILL_CHUNK = 1024  # tokens a prompt is read in at a time (memory for one chunk, whatever its length)

# A model's state: LSTM (h, c), GRU h, conv a tuple of per-layer caches; None means fresh.
State = Any
# Continues a sequence one token per call: (B,) ids -> (B, vocab) logits (LanguageModel.stepper).
Stepper = Callable[[torch.Tensor], torch.Tensor]


@dataclass(kw_only=True)
class ModelConfig:
    """Hyperparameters that rebuild a model exactly; stored as JSON beside its weights.

    Its fields but `vocab_size` are also `reverie train`'s options (`kind` is `--model`): a run's
    options hold its model as one of these (`TrainOptions.model`), so their defaults, help and
    bounds are defined once, here. In a run's options `vocab_size` is None (the corpus's, set when
    the run builds its model), and so is a `dropout` not given (the run chooses it for its budget,
    reverie.text.fit); a model built from a config without one has none (models.build_model).
    """

    kind: str = option("lstm", "model kind", choices=KINDS, named="model")
    vocab_size: int | None = option(
        None, "tokens in the vocabulary (a run's: its corpus's)", low=1, high=MAX_VOCAB, cli=False
    )
    embed: int = option(
        64, "token embedding size; 0 feeds one-hot vectors as the book does", low=0, high=MAX_WIDTH
    )
    hidden: int = option(448, "hidden units (conv: channels)", low=1, high=MAX_WIDTH)
    layers: int = option(2, "layers", low=1, high=MAX_LAYERS)
    dropout: float | None = option(
        None,
        "dropout between layers and before the output (default: for an LSTM or GRU, chosen for the "
        "epochs the budget buys, see reverie.text.fit; 0 for the others)",
        low=0,
        high=1,
        high_open=True,
    )
    kernel_size: int = option(3, "conv model: kernel size (layer i has dilation 2**i)", low=2, high=64)
    heads: int = option(4, "transformer: attention heads (--hidden must be a multiple)", low=1, high=256)
    context: int = option(
        128, "transformer: tokens it sees, and the length of its training windows", low=2, high=1 << 16
    )
    positions: str = option("rotary", "transformer: rotary or learned position embeddings", choices=POSITIONS)
    init: str = option("torch", "weight initialization: PyTorch's or Keras' defaults", choices=INITS)
    predict: int = option(
        1,
        "tokens each position predicts: N - 1 extra heads learn the tokens after the next (multi-token "
        "prediction), which `reverie generate --speculative heads` drafts with; 1: the next token only",
        low=1,
        high=MAX_PREDICT,
        metavar="N",
    )

    def validate(self) -> None:
        """Refuse a configuration that cannot build a model, or would build one too big to hold
        (checked before any weight is allocated), in one line."""
        check(self)
        require(self.vocab_size is not None, "a model is built for a vocabulary: give its vocab_size")
        check_predict(self.kind, self.predict)
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
        return parameter_count(self)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.predict == 1:  # as before --predict: a model of one head reads in older versions
            del data["predict"]
        return data

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


def check_predict(kind: str, predict: int) -> None:
    """Refuse extra heads (--predict above 1) on a model that has none, in one line."""
    require(
        predict == 1 or kind in PREDICT_KINDS,
        f"--predict {predict} is for the {', '.join(PREDICT_KINDS)} models, not {kind}; use --predict 1",
    )


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
    chunks and runs `logits` on its last position only. A model of `config.predict` N > 1 has N - 1
    extra heads (`ahead`, added by `add_ahead` last, so the other weights are a one-head model's):
    head j turns the last hidden layer h into h + SiLU(W_j h + b_j), starting at h (W_j, b_j zero,
    as Medusa's heads do), and `logits` turns that into its guess of the token j + 1 after the
    next (Gloeckle et al. 2024, multi-token prediction, on the same output layer).
    `forward(..., ahead=True)` gives every head's logits for training; generation uses the first
    head's, and `reverie.text.speculative` drafts with the others (`ahead_logits`).
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
        self.ahead = nn.ModuleList()  # add_ahead's extra heads: none until it runs

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

    def add_ahead(self) -> None:
        """The extra heads of `config.predict` (none for 1): a subclass adds them last, from zero."""
        width = self.config.hidden
        self.ahead.extend(nn.Linear(width, width) for _ in range(self.config.predict - 1))
        for layer in self.ahead:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def ahead_logits(self, hidden: torch.Tensor, heads: int | None = None) -> list[torch.Tensor]:
        """The extra heads' logits (the first `heads` of them, default all) of the last hidden
        layer (..., H): the guesses of the second, third, ... token after it."""
        return [self.logits(hidden + F.silu(layer(hidden))) for layer in list(self.ahead)[:heads]]

    def forward(
        self, tokens: torch.Tensor, state: State = None, ahead: bool = False
    ) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], State]:
        """Next-token logits (B, T, vocab) and the state after `tokens`; with `ahead` and extra
        heads, a tuple of every head's logits, the next token's first (training)."""
        hidden, state = self.features(tokens, state)
        if ahead and len(self.ahead):
            return (self.logits(hidden), *self.ahead_logits(hidden)), state
        return self.logits(hidden), state

    def read(
        self, tokens: torch.Tensor, state: State = None, chunk: int = PREFILL_CHUNK
    ) -> tuple[torch.Tensor, State]:
        """Read `tokens` (B, T), `chunk` at a time: the last hidden layer at the last token (B, H)
        and the state there, in the memory of one chunk whatever T."""
        for start in range(0, tokens.shape[1], chunk):
            hidden, state = self.features(tokens[:, start : start + chunk], state)
        return hidden[:, -1], state

    def prefill(
        self, tokens: torch.Tensor, state: State = None, chunk: int = PREFILL_CHUNK
    ) -> tuple[torch.Tensor, State]:
        """Read `tokens` (B, T) as `read` does and return the logits after the last (B, vocab) and
        the state there: forward's last position."""
        hidden, state = self.read(tokens, state, chunk)
        return self.logits(hidden), state

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

    def start_output_bias(self, counts: torch.Tensor) -> None:
        """Start the output layer's bias at the log frequency of each token, from its `counts` (V,)
        in the training text, add-one smoothed; a model whose output has no bias (the transformer
        reads its logits off its embedding) keeps its own."""
        head = getattr(self, "head", None)
        if isinstance(head, nn.Linear) and head.bias is not None:
            frequency = (counts.double() + 1) / (counts.sum() + len(counts))
            with torch.no_grad():
                head.bias.copy_(frequency.log())

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


def receptive_field(config: ModelConfig) -> int | None:
    """Tokens of context a conv model sees (None for the RNNs, whose context is unbounded)."""
    if config.kind != "conv":
        return None
    return 1 + (config.kernel_size - 1) * sum(2**i for i in range(config.layers))


def parameter_count(config: ModelConfig) -> int:
    """The number of parameters the model of `config` has, without building it (what the size limit
    checks; tests hold it against the built model's, of each kind)."""
    size, hidden, vocab = config.embed or config.vocab_size, config.hidden, config.vocab_size
    ahead = (config.predict - 1) * (hidden + 1) * hidden  # LanguageModel.add_ahead's heads
    if config.kind == "transformer":  # transformer.TransformerLM: the output tied to the embedding
        positions = config.context * hidden if config.positions == "learned" else 0
        blocks = config.layers * (12 * hidden**2 + 4 * hidden)
        return vocab * hidden + positions + blocks + 2 * hidden + ahead
    if config.kind == "conv":  # models.ConvLM
        k = config.kernel_size
        block = 2 * hidden + (k * hidden + 1) * 2 * hidden + (hidden + 1) * hidden
        head = 2 * hidden + (hidden + 1) * vocab
        return vocab * config.embed + (size + 1) * hidden + config.layers * block + head
    gates = 4 if config.kind == "lstm" else 3  # models.RecurrentLM
    recurrent = gates * hidden * (size + hidden + 2) + (config.layers - 1) * gates * hidden * (2 * hidden + 2)
    return vocab * config.embed + recurrent + (hidden + 1) * vocab + ahead
