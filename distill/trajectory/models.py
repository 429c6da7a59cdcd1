"""Trajectory teacher (server side, with neighbours) and students (device side, own track only).

Both read the encoded track ``(N, 8, 2)`` of :func:`runtime.forecast.encode` and output offsets
``(N, 12, 2)`` from the constant-velocity extrapolation, in the local frame. Students are
non-recurrent and use only Gemm/Conv/Relu/Concat/Sub/Reshape, which every NPU stack runs.
"""
from __future__ import annotations

import torch
from torch import nn

OBS_LEN, PRED_LEN = 8, 12


def _track_features(x: torch.Tensor) -> torch.Tensor:
    """(N, T, 2) positions -> (N, T*2 + (T-1)*2) positions and velocities."""
    vel = x[:, 1:] - x[:, :-1]
    return torch.cat([x.flatten(1), vel.flatten(1)], dim=1)


class MLPStudent(nn.Module):
    """Positions + velocities -> hidden ReLU layers -> offsets."""

    inputs = ("x",)

    def __init__(self, hidden: int = 160, layers: int = 2, obs_len: int = OBS_LEN, pred_len: int = PRED_LEN):
        super().__init__()
        self.pred_len = pred_len
        dims = [obs_len * 2 + (obs_len - 1) * 2] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], pred_len * 2))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_track_features(x)).view(-1, self.pred_len, 2)


class ConvStudent(nn.Module):
    """1-D convolutions over time (positions and velocities as channels) -> linear head."""

    inputs = ("x",)

    def __init__(self, channels: int = 48, obs_len: int = OBS_LEN, pred_len: int = PRED_LEN):
        super().__init__()
        self.pred_len = pred_len
        self.conv = nn.Sequential(
            nn.Conv1d(4, channels, 3, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(channels * obs_len, 96), nn.ReLU(), nn.Linear(96, pred_len * 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vel = torch.cat([x[:, 1:2] - x[:, 0:1], x[:, 1:] - x[:, :-1]], dim=1)
        h = self.conv(torch.cat([x, vel], dim=2).transpose(1, 2))
        return self.head(h.flatten(1)).view(-1, self.pred_len, 2)


class SocialMLPStudent(nn.Module):
    """:class:`MLPStudent` that also reads the nearest people (runtime.forecast.neighbour_features:
    local position, velocity, presence of up to 4 neighbours at the last observed step)."""

    inputs = ("x", "soc")

    def __init__(self, hidden: int = 160, layers: int = 2, neighbours: int = 4, obs_len: int = OBS_LEN,
                 pred_len: int = PRED_LEN):
        super().__init__()
        self.pred_len = pred_len
        dims = [obs_len * 2 + (obs_len - 1) * 2 + neighbours * 5] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], pred_len * 2))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, soc: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([_track_features(x), soc.flatten(1)], 1)).view(-1, self.pred_len, 2)


class MultiModalStudent(nn.Module):
    """:class:`SocialMLPStudent`'s body with three heads: one deterministic path (the forecast, for
    ADE/FDE and drawing), ``k`` alternative paths and their logits (for P(zone entry)).

    forward -> ``(offsets (N, 12, 2), path_offsets (N, k, 12, 2), path_logits (N, k))``, all
    offsets from constant velocity in the local frame (the ONNX outputs keep these names and order).
    One Gemm stack, so it runs wherever the single-path student runs."""

    inputs = ("x", "soc")

    def __init__(self, hidden: int = 140, k: int = 3, neighbours: int = 4, obs_len: int = OBS_LEN,
                 pred_len: int = PRED_LEN):
        super().__init__()
        self.k, self.pred_len = k, pred_len
        d = obs_len * 2 + (obs_len - 1) * 2 + neighbours * 5
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, (k + 1) * pred_len * 2 + k))

    def forward(self, x: torch.Tensor, soc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.net(torch.cat([_track_features(x), soc.flatten(1)], 1))
        n = self.k * self.pred_len * 2
        return (h[:, n + self.k:].view(-1, self.pred_len, 2), h[:, :n].view(-1, self.k, self.pred_len, 2),
                h[:, n:n + self.k])


STUDENTS = {"mlp": MLPStudent, "conv": ConvStudent, "social-mlp": SocialMLPStudent, "social-mm": MultiModalStudent}


def deterministic(out):
    """The deterministic forecast of a model's output: the output itself, or a multi-modal
    student's first output."""
    return out[0] if isinstance(out, (tuple, list)) else out


class Teacher(nn.Module):
    """Transformer over the ego track's time steps plus one token per neighbour.

    Ego tokens: position, velocity and a learned time embedding. Neighbour tokens: the
    neighbour's whole observed track in the ego's local frame with its presence mask; absent
    neighbours are masked out of attention. The head reads the pooled ego tokens.
    """

    inputs = ("x", "nb")

    def __init__(self, d: int = 96, layers: int = 3, heads: int = 4, obs_len: int = OBS_LEN,
                 pred_len: int = PRED_LEN, neighbours: bool = True):
        super().__init__()
        self.pred_len, self.use_nb = pred_len, neighbours
        self.ego = nn.Linear(4, d)
        self.time = nn.Parameter(torch.zeros(1, obs_len, d))
        self.nb = nn.Sequential(nn.Linear(obs_len * 5, d), nn.ReLU(), nn.Linear(d, d))
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(2 * d + 30, 2 * d), nn.ReLU(), nn.Linear(2 * d, pred_len * 2))
        nn.init.normal_(self.time, std=0.02)

    def forward(self, x: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        vel = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
        tokens = self.ego(torch.cat([x, vel], -1)) + self.time
        mask = torch.zeros(n, t, dtype=torch.bool, device=x.device)
        if self.use_nb:
            pos, pres = nb[..., :2], nb[..., 2:]
            nvel = torch.cat([torch.zeros_like(pos[:, :, :1]), pos[:, :, 1:] - pos[:, :, :-1]], 2) * pres
            feat = torch.cat([pos, nvel, pres], -1).flatten(2)
            tokens = torch.cat([tokens, self.nb(feat)], 1)
            mask = torch.cat([mask, pres[..., 0].sum(-1) == 0], 1)
        h = self.enc(tokens, src_key_padding_mask=mask)
        ego = h[:, :t]
        z = torch.cat([ego.mean(1), ego[:, -1], _track_features(x)], -1)
        return self.head(z).view(-1, self.pred_len, 2)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
