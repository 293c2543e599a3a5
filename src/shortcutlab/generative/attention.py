"""Read the UNet's cross-attention maps: one map per condition token (class, domain, ...).

For diffusion cross-attention grounding (Vilouras et al., IEEE JBHI; docs/methods.md section 8)
and prompt-to-prompt style inspection (Hertz et al. 2022). ``CrossAttentionRecorder`` swaps the
processors of the UNet's cross-attention layers (``attn2``) for ones that also keep the
attention probabilities, while ``recording`` is True; the UNet's output is unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor


class _RecordingProcessor:
    def __init__(self, recorder: CrossAttentionRecorder, name: str):
        self.recorder, self.name, self.plain = recorder, name, AttnProcessor()

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw
    ):
        if encoder_hidden_states is None or not self.recorder.recording:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        if hidden_states.ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None)  # (B * heads, HW, tokens)
        batch = encoder_hidden_states.shape[0]
        self.recorder.store(self.name, probs.view(batch, attn.heads, *probs.shape[1:]).detach())
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if residual.ndim == 4:
            out = out.transpose(-1, -2).reshape(residual.shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class CrossAttentionRecorder:
    """``with CrossAttentionRecorder(unet, layers=("mid", "up")) as rec: ...; rec.token_maps(64)``.

    ``layers``: substrings of the attention layer names to record (e.g. ``"mid"``, ``"up_blocks.1"``);
    empty records all. Set ``rec.recording = False`` to skip timesteps outside a window.
    """

    def __init__(self, unet, layers: tuple[str, ...] = ()):
        self.unet, self.layers = unet, tuple(layers)
        self.recording = True
        self.maps: dict[str, list[torch.Tensor]] = {}
        self._saved = None

    def store(self, name: str, probs: torch.Tensor) -> None:
        self.maps.setdefault(name, []).append(probs)

    def __enter__(self) -> CrossAttentionRecorder:
        self._saved = self.unet.attn_processors
        procs = {}
        for name, proc in self._saved.items():
            wanted = name.endswith("attn2.processor") and (
                not self.layers or any(s in name for s in self.layers)
            )
            procs[name] = _RecordingProcessor(self, name) if wanted else proc
        self.unet.set_attn_processor(procs)
        return self

    def __exit__(self, *exc) -> None:
        self.unet.set_attn_processor(self._saved)

    def token_maps(self, size: int) -> torch.Tensor:
        """Mean over layers, heads and recorded calls: ``(B, n_tokens, size, size)``, each pixel's
        attention over the tokens sums to one."""
        if not self.maps:
            raise RuntimeError("no cross-attention was recorded; run the UNet inside the context")
        per_layer = []
        for calls in self.maps.values():
            probs = torch.stack(calls).mean(dim=(0, 2))  # (B, HW, tokens)
            side = int(math.isqrt(probs.shape[1]))
            grid = probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], side, side)
            per_layer.append(
                F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
            )
        return torch.stack(per_layer).mean(0)
