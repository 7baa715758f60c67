"""GainAKT2Exp: a two-stream transformer for knowledge tracing with mastery and learning-gain heads.

The architecture is the "legacy" mode of the public reference (see docs/losses.md for the losses):

* Interaction tokens ``x_t = q_t + C * r_t`` (vocabulary 2C) feed two streams: a *context* stream and
  a *value* stream, each with its own token embedding plus one shared learned positional embedding.
  No scaling by sqrt(D), default PyTorch initialisation everywhere.
* N post-norm encoder blocks. Queries and keys come from the context stream, values from the value
  stream; position t attends to positions 0..t (itself included). The same attention output ``a``
  updates both streams: ``value' = LN(value + a)``, ``mid = LN(context + a)``,
  ``context' = LN(mid + Dropout(FFN(mid)))``. The value stream has no feed-forward layer.
* Prediction MLP on ``[context_t, value_t, concept_embedding(qry_t)]`` -> logit of answering the
  concept asked at t+1 correctly.
* Gain head ``g_t = ReLU(W_g value_t)`` ([B, T, C], >= 0) and mastery head
  ``m_0 = sigmoid(W_m context_0)``, ``m_t = min(1, m_0 + gain_scale * sum_{s=1..t} g_s)``.
  Because g >= 0 this closed form equals the reference's step-by-step clamped recursion
  ``m_t = clamp(m_{t-1} + gain_scale * g_t, 0, 1)``; it is computed with one cumulative sum.
  ``mastery_accumulation="headroom"`` (opt-in, hashed; not the paper's head) replaces the clamp by
  ``m_t = 1 - (1 - m_0) * exp(-gain_scale * sum_{s=1..t} g_s)``: each gain closes a share of the
  remaining headroom ``1 - m`` (the recursion ``m_t = 1 - (1 - m_{t-1}) exp(-gain_scale g_t)``), so
  mastery approaches 1 without reaching it after a few steps (docs/metrics.md, "Saturation").

Paper configuration (D=512, H=8, N=6, F=1024, C=100): 14,658,761 parameters with both heads,
14,556,161 without.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gainakt.data.batching import Packing

__all__ = ["MASTERY_ACCUMULATIONS", "GainAKT2Exp", "EncoderBlock", "TwoStreamAttention", "accumulate_mastery"]

# How gains accumulate into mastery: "clamp" is the paper's (and the reference's) head.
MASTERY_ACCUMULATIONS = ("clamp", "headroom")


class _MaskedScale(torch.autograd.Function):
    """y = x * mask, where ``mask`` (0 or 1/(1-p)) was drawn in forward; backward reuses it.

    Dropout and ReLU+dropout on CPU: PyTorch's CPU dropout draws a Bernoulli tensor (slow) and
    keeps it as float; drawing uniforms and folding ReLU into the same mask saves about a third of
    the elementwise time of a training step on a 2-core machine.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def _keep_mask(x: Tensor, p: float) -> Tensor:
    # Uniform draws compared with p give an exact Bernoulli(1-p) mask, scaled so E[y] = x.
    return torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout; the native kernel on GPU, the uniform-mask version on CPU."""
    if not training or p == 0.0:
        return x
    if x.is_cuda or p >= 1.0:
        return F.dropout(x, p, True)
    return _MaskedScale.apply(x, _keep_mask(x.detach(), p))


def relu_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """dropout(relu(x)) with one mask for both on CPU (the ReLU gradient is the same mask)."""
    if not training or p == 0.0 or x.is_cuda or p >= 1.0:
        return F.dropout(F.relu(x), p, training)
    mask = _keep_mask(x.detach(), p).mul_(x.detach() > 0)
    return _MaskedScale.apply(x, mask)


def accumulate_mastery(initial: Tensor, gains: Tensor, gain_scale: float, form: str = "clamp") -> Tensor:
    """Return mastery [B, T, C] from initial mastery [B, C] and non-negative gains [B, T, C].

    ``m_0 = initial``; with ``form="clamp"`` (the paper's head)
    ``m_t = min(1, initial + gain_scale * sum_{s=1..t} gains_s)``, with ``form="headroom"``
    ``m_t = 1 - (1 - initial) * exp(-gain_scale * sum_{s=1..t} gains_s)``. The gain of step 0 is not
    used (as in the reference). Computed in float32 whatever the input dtype, so that the cumulative
    sum and the clamp behave the same under fp16/bf16 autocast.
    """
    if form not in MASTERY_ACCUMULATIONS:
        raise ValueError(f"unknown mastery accumulation {form!r}; one of {', '.join(MASTERY_ACCUMULATIONS)}")
    initial = initial.float()
    gains = gains.float()
    if gains.shape[1] == 1:
        return initial.unsqueeze(1)
    growth = torch.cumsum(gains[:, 1:], dim=1).mul_(gain_scale)
    if form == "clamp":
        later = (initial.unsqueeze(1) + growth).clamp_(max=1.0)
    else:
        later = 1.0 - (1.0 - initial).unsqueeze(1) * torch.exp(-growth)
    return torch.cat([initial.unsqueeze(1), later], dim=1)


class TwoStreamAttention(nn.Module):
    """Causal multi-head attention with queries/keys from one stream and values from another.

    Linear(D, D) projections for Q, K (from the context stream) and V (from the value stream), then
    the output projection Linear(D, D) and dropout. No dropout on the attention weights.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.p = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, context: Tensor, value: Tensor, mask: Tensor | None = None,
                at: Tensor | None = None) -> Tensor:
        """Return the attention output [B, T, D] (after out-projection and dropout).

        ``mask`` (boolean [B, 1, T, T], True = may attend) replaces the causal mask for packed rows.
        ``at`` (long [B]): compute only the query at position ``at[i]`` of row i; returns [B, 1, D].
        """
        b, t, d = context.shape
        h = self.n_heads

        def heads(x: Tensor) -> Tensor:
            return x.view(b, x.shape[1], h, d // h).transpose(1, 2)

        query = context if at is None else context[torch.arange(b, device=at.device), at].unsqueeze(1)
        if at is not None:  # the one query sees positions 0..at[i]
            mask = (torch.arange(t, device=at.device).unsqueeze(0) <= at.unsqueeze(1)).view(b, 1, 1, t)
        # is_causal: position t sees 0..t, itself included. No leakage: the prediction made at t is
        # about the interaction at t+1.
        att = F.scaled_dot_product_attention(
            heads(self.q_proj(query)), heads(self.k_proj(context)), heads(self.v_proj(value)),
            attn_mask=mask, dropout_p=0.0, is_causal=mask is None,
        )
        att = att.transpose(1, 2).reshape(b, query.shape[1], d)
        return dropout(self.out_proj(att), self.p, self.training)


class EncoderBlock(nn.Module):
    """One post-norm two-stream block (see the module docstring for the update equations).

    The feed-forward network is Linear(D, F) -> ReLU -> Dropout -> Linear(F, D).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.p = dropout
        self.attention = TwoStreamAttention(d_model, n_heads, dropout)
        self.norm_value = nn.LayerNorm(d_model)
        self.norm_context_attn = nn.LayerNorm(d_model)
        self.norm_context_ffn = nn.LayerNorm(d_model)
        self.ffn_in = nn.Linear(d_model, d_ff)
        self.ffn_out = nn.Linear(d_ff, d_model)

    def forward(self, context: Tensor, value: Tensor, mask: Tensor | None = None,
                at: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return the updated (context, value) streams (``mask``, ``at``: see TwoStreamAttention)."""
        a = self.attention(context, value, mask, at)
        if at is not None:  # only position at[i] of each row goes on
            rows = torch.arange(context.shape[0], device=at.device)
            context, value = context[rows, at].unsqueeze(1), value[rows, at].unsqueeze(1)
        value = self.norm_value(value + a)
        mid = self.norm_context_attn(context + a)
        ffn = self.ffn_out(relu_dropout(self.ffn_in(mid), self.p, self.training))
        context = self.norm_context_ffn(mid + dropout(ffn, self.p, self.training))
        return context, value


class PredictionHead(nn.Module):
    """MLP on concat[context, value, concept_embedding(qry)]: Linear(3D, F) -> ReLU -> Dropout -> Linear(F, 1).

    The first layer is evaluated as ``W[:, :2D] @ [context, value] + (E_concept W[:, 2D:]^T)[qry]``:
    the concept part is a [C, F] table computed once per step instead of a [B*T, D] x [D, F]
    product. Same parameters and same function as the plain concatenation.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.p = dropout
        self.fc1 = nn.Linear(3 * d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, 1)

    def forward(self, context: Tensor, value: Tensor, qry: Tensor, concept_weight: Tensor) -> Tensor:
        """Return logits [B, T]."""
        two_d = 2 * self.d_model
        weight = self.fc1.weight
        concept_table = F.linear(concept_weight, weight[:, two_d:])
        hidden = F.linear(torch.cat([context, value], dim=-1), weight[:, :two_d], self.fc1.bias)
        hidden = hidden + F.embedding(qry, concept_table)
        return self.fc2(relu_dropout(hidden, self.p, self.training)).squeeze(-1)


class GainAKT2Exp(nn.Module):
    """GainAKT2Exp (legacy two-stream mode) with optional mastery and gain heads.

    ``head_normalization=True`` (the guide's ``--enable_head_normalization``) inserts a LayerNorm(D)
    in front of each head: the mastery head reads ``LN(context_N)`` and the gain head reads
    ``LN(value_N)``. It adds 4·D parameters and is off in the paper configuration.
    ``mastery_accumulation``: how gains accumulate into mastery (``accumulate_mastery``; "clamp" is
    the paper's head). If either head is disabled, neither mastery nor gains are produced (as in the
    reference).
    """

    def __init__(
        self,
        *,
        num_c: int,
        d_model: int = 512,
        n_heads: int = 8,
        n_blocks: int = 6,
        d_ff: int = 1024,
        dropout: float = 0.2,
        max_len: int = 200,
        use_mastery_head: bool = True,
        use_gain_head: bool = True,
        gain_scale: float = 0.1,
        head_normalization: bool = False,
        mastery_accumulation: str = "clamp",
    ) -> None:
        super().__init__()
        if mastery_accumulation not in MASTERY_ACCUMULATIONS:
            raise ValueError(f"mastery_accumulation must be one of {', '.join(MASTERY_ACCUMULATIONS)}, "
                             f"got {mastery_accumulation!r}")
        if num_c < 1:
            raise ValueError(f"num_c must be >= 1, got {num_c}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_c = num_c
        self.d_model = d_model
        self.max_len = max_len
        self.gain_scale = float(gain_scale)
        self.heads_enabled = bool(use_mastery_head and use_gain_head)
        self.head_normalization = bool(head_normalization and self.heads_enabled)
        self.mastery_accumulation = mastery_accumulation

        self.context_embedding = nn.Embedding(2 * num_c, d_model)
        self.value_embedding = nn.Embedding(2 * num_c, d_model)
        self.concept_embedding = nn.Embedding(num_c, d_model)
        self.pos_embedding = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_blocks)
        )
        self.prediction = PredictionHead(d_model, d_ff, dropout)
        # Heads are built only when both are on, so the parameter count without heads is exact.
        if self.heads_enabled:
            self.mastery_head = nn.Linear(d_model, num_c)
            self.gain_head = nn.Linear(d_model, num_c)
            if self.head_normalization:
                self.mastery_norm: nn.Module = nn.LayerNorm(d_model)
                self.gain_norm: nn.Module = nn.LayerNorm(d_model)
            else:
                self.mastery_norm = nn.Identity()
                self.gain_norm = nn.Identity()

    def forward(self, q: Tensor, r: Tensor, qry: Tensor, *, return_streams: bool = False, heads: bool = True,
                pack: Packing | None = None, only_at: Tensor | None = None) -> dict:
        """Run the model on a batch.

        Args:
            q: [B, T] concept answered at t. r: [B, T] response at t (0/1, any dtype).
            qry: [B, T] concept asked at t+1 (the prediction target's concept).
            heads: compute the mastery and gain heads (False: both are None; the logits are the
                same). Evaluation passes that score only predictions skip the [B, T, C] heads.
            pack: a plan from ``gainakt.data.batching.plan_packing``: the rows' valid positions
                are packed into shared rows with a block-diagonal causal mask and per-window
                positions, and every output is unpacked to [B, T]. Valid positions equal the
                unpacked computation up to float rounding; padding positions read 0 logits
                and gains.
            only_at: long [B]: only the prediction at position ``only_at[i]`` of row i is wanted
                (pyKT's window protocol scores one position per row). The last block and the
                prediction MLP run for that position only; ``logits``/``predictions`` are [B, 1],
                there are no heads, and ``pack``/``return_streams`` cannot be combined with it.
        Returns a dict with ``predictions`` [B, T] (probability of a correct answer at t+1),
        ``logits`` [B, T], ``mastery`` [B, T, C] float32 or None, ``gains`` [B, T, C] float32 or None,
        and, with ``return_streams``, the final ``context`` and ``value`` streams [B, T, D].
        """
        if q.dim() != 2 or q.shape != r.shape or q.shape != qry.shape:
            raise ValueError(
                f"q, r, qry must share one [B, T] shape, got {tuple(q.shape)}, {tuple(r.shape)}, "
                f"{tuple(qry.shape)}"
            )
        b, t = q.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.max_len}")
        tokens = q.long() + self.num_c * r.long()
        qry = qry.long()
        mask = None
        if pack is None:
            pos: Tensor = self.pos_embedding.weight[:t]
        else:
            if pack.width != t or pack.dest.numel() != b * t:
                raise ValueError(f"packing plan is for [{pack.dest.numel() // pack.width}, {pack.width}], "
                                 f"batch is [{b}, {t}]")
            tokens, qry = _pack(tokens, pack), _pack(qry, pack)
            pos, mask = self.pos_embedding(pack.position), pack.attention_mask()
        if only_at is not None and (pack is not None or return_streams):
            raise ValueError("only_at cannot be combined with pack or return_streams")
        context = self.context_embedding(tokens) + pos
        value = self.value_embedding(tokens) + pos
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            context, value = block(context, value, mask, only_at if i == last else None)
        if only_at is not None:
            qry = qry[torch.arange(b, device=only_at.device), only_at].unsqueeze(1)
            heads = False

        logits = self.prediction(context, value, qry, self.concept_embedding.weight)
        mastery = gains = None
        if self.heads_enabled and heads:
            gains = F.relu(self.gain_head(self.gain_norm(value)).float())
            # Only step 0 of the mastery head enters the recursion, so only step 0 is computed.
            first = context[:, 0] if pack is None else context.reshape(-1, self.d_model)[pack.starts]
            initial = torch.sigmoid(self.mastery_head(self.mastery_norm(first)).float())
            gains = gains if pack is None else _unpack(gains, pack, b)
            mastery = self.accumulate(initial, gains)
        if pack is not None:
            logits = _unpack(logits, pack, b)
            if return_streams:
                context, value = _unpack(context, pack, b), _unpack(value, pack, b)
        out: dict = {"predictions": torch.sigmoid(logits), "logits": logits, "mastery": mastery, "gains": gains}
        if return_streams:
            out["context"] = context
            out["value"] = value
        return out

    def accumulate(self, initial: Tensor, gains: Tensor) -> Tensor:
        """Mastery [B, T, C] of rows starting at ``initial`` [B, C] with ``gains`` [B, T, C], under this
        model's accumulation and gain scale (the head's own rule; the whole-student view reuses it)."""
        return accumulate_mastery(initial, gains, self.gain_scale, self.mastery_accumulation)


def _pack(x: Tensor, pack: Packing) -> Tensor:
    """[B, T, ...] -> [R, W, ...]; empty slots read zeros."""
    flat = x.reshape(-1, *x.shape[2:])
    flat = torch.cat([flat, flat.new_zeros((1, *x.shape[2:]))])
    return flat.index_select(0, pack.src).view(pack.rows, pack.width, *x.shape[2:])


def _unpack(x: Tensor, pack: Packing, batch: int) -> Tensor:
    """[R, W, ...] -> [B, T, ...]; padding positions read zeros."""
    flat = x.reshape(-1, *x.shape[2:])
    flat = torch.cat([flat, flat.new_zeros((1, *x.shape[2:]))])
    return flat.index_select(0, pack.dest).view(batch, pack.width, *x.shape[2:])
