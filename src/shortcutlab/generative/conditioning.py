"""Label conditioning as cross-attention tokens: one learned token per condition field.

Each field (class label ``y``, domain token, later any attribute) has its own embedding table with
one extra *null* id (index = cardinality) for condition dropout, so classifier-free guidance
(Ho & Salimans 2022) needs no separate model. The tokens stand in for a text encoder's output in a
Stable-Diffusion-style ``UNet2DConditionModel`` (Rombach et al. 2022): one token per field keeps a
per-field cross-attention map, which diffusion-attention grounding (Vilouras et al.) reads out.

``sink=True`` puts one learned token before the fields' tokens, present under every condition
(null included), as a text encoder's begin-of-sequence token is in Stable Diffusion. Without it
the softmax over the keys runs over the field tokens alone, so with two fields one token's map is
one minus the other's, wherever the image is; the sink gives attention that belongs to no field
a place to go (docs/methods.md section 8).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from shortcutlab.errors import ShortcutlabError

Condition = dict[str, "torch.Tensor | int | list[int]"]


class LabelConditioner(ModelMixin, ConfigMixin):
    """Maps ``{field: ids}`` to tokens ``(B, n_fields, dim)``; a missing field means *null*."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self, field_names: list[str], cardinalities: list[int], dim: int = 64, sink: bool = False
    ):
        super().__init__()
        if len(field_names) != len(cardinalities) or not field_names:
            raise ShortcutlabError("Give one cardinality for each condition field (at least one).")
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, dim) for c in cardinalities)
        for emb in self.embeddings:
            nn.init.normal_(emb.weight, std=1.0)
        self.sink_embedding = nn.Parameter(torch.randn(1, 1, dim)) if sink else None

    @property
    def fields(self) -> dict[str, int]:
        return dict(zip(self.config.field_names, self.config.cardinalities, strict=True))

    def token_index(self, field: str) -> int:
        """Where ``field``'s token sits among the cross-attention keys (after the sink)."""
        return list(self.fields).index(field) + (self.sink_embedding is not None)

    def null_ids(self, field: str) -> int:
        return self.fields[field]

    def ids(self, cond: Condition | None, batch_size: int) -> torch.Tensor:
        """Integer ids ``(B, n_fields)``, null where a field is absent; checks the user's labels."""
        cond = cond or {}
        unknown = set(cond) - set(self.fields)
        if unknown:
            raise ShortcutlabError(
                f"Unknown condition field(s) {sorted(unknown)}; the model knows {list(self.fields)}."
            )
        cols = []
        for name, card in self.fields.items():
            value = cond.get(name)
            if value is None:
                col = torch.full((batch_size,), card, dtype=torch.long)
            else:
                col = torch.as_tensor(value, dtype=torch.long).reshape(-1).cpu()
                if col.numel() == 1:
                    col = col.expand(batch_size).clone()
                if col.numel() != batch_size:
                    raise ShortcutlabError(
                        f"Condition '{name}' has {col.numel()} values for a batch of {batch_size}."
                    )
                if col.min() < 0 or col.max() > card:
                    raise ShortcutlabError(
                        f"Condition '{name}' must be in [0, {card - 1}] (or {card} for null)."
                    )
            cols.append(col)
        return torch.stack(cols, dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.device)
        tokens = torch.stack([emb(ids[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)
        if self.sink_embedding is None:
            return tokens
        return torch.cat([self.sink_embedding.expand(len(tokens), -1, -1), tokens], dim=1)

    def null_like(self, ids: torch.Tensor) -> torch.Tensor:
        """The all-null condition of the same batch size (the unconditional branch of CFG)."""
        null = torch.tensor(self.config.cardinalities, dtype=torch.long, device=ids.device)
        return null.expand_as(ids).clone()

    def drop(self, ids: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
        """Condition dropout: each field independently, and all fields jointly, with prob. ``p``."""
        if p <= 0:
            return ids
        b, k = ids.shape
        per_field = torch.rand(b, k, generator=generator) < p
        joint = torch.rand(b, 1, generator=generator) < p
        drop = (per_field | joint).to(ids.device)
        return torch.where(drop, self.null_like(ids), ids)
