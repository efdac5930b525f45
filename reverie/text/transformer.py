"""A decoder-only transformer language model (GPT), and its one-token stepper over a KV cache.

    from reverie.text.language_model import ModelConfig
    from reverie.text.models import build_model
    config = ModelConfig(kind="transformer", vocab_size=65, layers=4, heads=4, hidden=128, context=128)
    model = build_model(config)
    logits, _ = model(tokens)                 # (B, T <= context) ids -> (B, T, vocab), causal
    last, state = model.prefill(prompt)       # the prompt's last `context` tokens, once
    step = model.stepper(state)               # then one token per call over the cached keys and values
    logits = step(next_tokens)                # (B,) -> (B, vocab)

Pre-norm blocks (LayerNorm, causal self-attention through
torch.nn.functional.scaled_dot_product_attention so a GPU uses its fused kernels, LayerNorm, a 4x
GELU MLP), rotary or learned positions, the output layer tied to the token embedding, GPT-2's
initialization. The model sees at most `context` tokens. Generating past them, the cache does not
roll one token at a time (the keys of the oldest tokens were computed from tokens since dropped):
when it is full, the last `context / 2` tokens are run again from scratch into a fresh cache and
stepping goes on. So every token is predicted from exactly what a full recompute of its window would
give: the tokens since the last re-run, between `context / 2` and `context` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reverie.text.language_model import LanguageModel, ModelConfig

ROPE_BASE = 10_000.0


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (B, heads, T, d) at `positions` (T,), or (B, T) where the
    streams stand at different positions: pairs of channels turned by position-dependent angles, so
    that attention depends on relative positions."""
    half = x.shape[-1] // 2
    frequencies = ROPE_BASE ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[..., None] * frequencies
    if angles.dim() == 3:  # (B, T, half): the same angles for every head
        angles = angles[:, None]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class Attention(nn.Module):
    """Multi-head causal self-attention; with `past` keys and values, the new tokens attend to them too."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads, self.rotary = config.heads, config.positions == "rotary"
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden, bias=False)
        self.proj = nn.Linear(config.hidden, config.hidden, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`mask` (B, 1, T, past + T), True where a new token may attend: given, it replaces the
        causal mask (reverie.text.speculative's streams, each with a past of its own length)."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if self.rotary:
            q, k = rotate(q, positions), rotate(k, positions)
        if past is not None:  # one new token (the stepper), or a verifier's tokens with their `mask`
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=past is None and mask is None and length > 1,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(batch, length, width)), (k, v)


class Block(nn.Module):
    """x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.hidden), nn.LayerNorm(config.hidden)
        self.attention = Attention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden, 4 * config.hidden, bias=False),
            nn.GELU(),
            nn.Linear(4 * config.hidden, config.hidden, bias=False),
            nn.Dropout(config.dropout),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, cache = self.attention(self.norm1(x), positions, past, mask)
        x = x + self.drop(attended)
        return x + self.mlp(self.norm2(x)), cache


@dataclass
class Window:
    """What the model has read of each stream: the tokens (B, n <= context) and every layer's keys
    and values for them (a re-run of the tokens gives the same)."""

    tokens: torch.Tensor
    caches: list[tuple[torch.Tensor, torch.Tensor]]


class TransformerLM(LanguageModel):
    """GPT: token embedding (+ learned positions) -> blocks -> LayerNorm -> the embedding, transposed."""

    takes_embed = False  # the tokens are embedded at --hidden; --embed is the recurrent models'
    state_batch_dim = 0

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.tokens = nn.Embedding(config.vocab_size, config.hidden)
        self.positions = (
            nn.Embedding(config.context, config.hidden) if config.positions == "learned" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.hidden)
        self.apply(self._init)
        for name, parameter in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith(("attention.proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.layers))
        self.add_ahead()

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def _run(
        self,
        tokens: torch.Tensor,
        start: int | torch.Tensor,
        pasts: list | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The last hidden layer of `tokens` at positions start, start + 1, ... and each layer's
        cache; `start` a tensor (B, T) is every token's position instead (streams at positions of
        their own: reverie.text.speculative), `mask` as Attention's."""
        if isinstance(start, torch.Tensor):
            positions = start
        else:
            positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens)
        if self.positions is not None:
            x = x + self.positions(positions)
        x = self.drop(x)
        caches = []
        for index, block in enumerate(self.blocks):
            x, cache = block(x, positions, pasts[index] if pasts is not None else None, mask)
            caches.append(cache)
        return self.norm(x), caches

    def features(self, tokens: torch.Tensor, state: Window | None = None) -> tuple[torch.Tensor, Window]:
        """Causal attention over `tokens` after the window `state` (if any), all run from scratch on
        the last `context` tokens: the hidden layer of (the last `context` of) `tokens`, and that window."""
        full = tokens if state is None else torch.cat([state.tokens, tokens], dim=1)
        kept = full[:, -self.config.context :]
        hidden, caches = self._run(kept, 0)
        return hidden[:, -min(tokens.shape[1], kept.shape[1]) :], Window(kept, caches)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.tokens.weight)

    def read(
        self, tokens: torch.Tensor, state: Window | None = None, chunk: int = 0
    ) -> tuple[torch.Tensor, Window]:
        """The last hidden layer at the last token and the window of the last `context` tokens (all
        a transformer can see), read at once."""
        hidden, window = self.features(tokens, state)
        return hidden[:, -1], window

    def repeat_state(self, state: Window, times: int) -> Window:
        repeat = lambda t: t.repeat_interleave(times, dim=0)
        return Window(repeat(state.tokens), [(repeat(k), repeat(v)) for k, v in state.caches])

    def stepper(self, state: Window) -> TransformerStepper:
        return TransformerStepper(self, state)


class TransformerStepper:
    """One-token steps over the KV cache; a full cache is re-run from its last context / 2 tokens."""

    def __init__(self, model: TransformerLM, state: Window) -> None:
        self.model, self.window = model, state

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        context = self.model.config.context
        if self.window.tokens.shape[1] >= context:
            kept = self.window.tokens[:, -(context // 2) :]
            _, caches = self.model._run(kept, 0)
            self.window = Window(kept, caches)
        start = self.window.tokens.shape[1]
        hidden, caches = self.model._run(tokens[:, None], start, self.window.caches)
        self.window = Window(torch.cat([self.window.tokens, tokens[:, None]], dim=1), caches)
        return self.model.logits(hidden[:, 0])
