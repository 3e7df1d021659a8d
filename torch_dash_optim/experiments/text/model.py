"""The model: a small GPT-style byte-level causal transformer, its next-token loss and its held-out loss.

:class:`~torch_dash_optim.experiments.text.CausalLM` is plain PyTorch, with separate ``q``/``k``/``v``/``out``
:class:`~torch.nn.Linear` projections, so that DASH and Shrink & Perturb act on each of them;
:func:`~torch_dash_optim.experiments.text.next_token_loss` is the loss it trains on (and DASH's ``batch_loss``),
:func:`~torch_dash_optim.experiments.text.heldout_loss` the one it is judged on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CausalLM", "heldout_loss", "next_token_loss"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate ``q``, ``k``, ``v`` and ``out`` Linear layers."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        """Each position attends to itself and the positions before it."""
        b, t, d = x.shape
        q, k, v = (m(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """``proj(gelu(fc(x)))``, four times as wide inside."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        """``proj(gelu(fc(x)))``."""
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: Tensor) -> Tensor:
        """The two residual steps, attention first."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CausalLM(nn.Module):
    """A small GPT-style causal language model in plain PyTorch (byte tokens by default).

    Token and position embeddings, ``layers`` pre-norm blocks (attention with separate q, k, v
    and out Linear layers, then an MLP), a final LayerNorm and an untied ``head`` Linear.
    Weights start as GPT-2's: normal with std 0.02 (the residual projections ``out`` and
    ``proj`` divided by :math:`\\sqrt{2 L}`), biases zero, norms one.

    Parameters
    ----------
    vocab:
        Vocabulary size (256 for bytes).
    context:
        The longest input.
    width, heads, layers:
        Model width, attention heads per block, blocks.

    Examples
    --------
    >>> model = CausalLM(context=8, width=16, heads=2, layers=1)
    >>> model(torch.randint(0, 256, (3, 8))).shape
    torch.Size([3, 8, 256])
    """

    def __init__(self, vocab: int = 256, context: int = 64, width: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out.weight", "proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(batch, time, vocab)`` of the next token at every position."""
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"input of {t} tokens is longer than the model's context={self.context}; cut it")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def next_token_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean cross-entropy of predicting ``batch[:, 1:]`` from ``batch[:, :-1]`` (a DASH ``batch_loss``).

    Examples
    --------
    >>> model = CausalLM(context=4, width=8, heads=2, layers=1)
    >>> next_token_loss(model, torch.randint(0, 256, (2, 5))).item() > 0
    True
    """
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def heldout_loss(model: nn.Module, data: Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats per byte) over every position of the windows ``data``.

    The model is put in eval mode for the pass and its mode restored.

    Examples
    --------
    >>> from torch_dash_optim.experiments.text import windows
    >>> model = CausalLM(context=4, width=8, heads=2, layers=1)
    >>> round(heldout_loss(model, windows(b"print('hello')" * 4, 4)), 1)  # about log(256) at init
    5.5
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(data), batch_size):
            batch = data[i : i + batch_size]
            logits = model(batch[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                           reduction="sum"))
            count += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    return total / count
