"""The model card: one YAML per zoo variant, written by distill/ and read by the planner.

    models/<task>/<variant>/card.yaml      this card
    models/<task>/<variant>/model.onnx     the FP32 master the card describes (sha256 below)

Accuracy figures say what data they come from (`real` or `synthetic`) and which split, so the
README and the planner never mix them up. Costs (params, MACs, activations, operators) come from
`compiler.onnxinfo.analyse` on the file itself, never typed by hand.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .onnxinfo import analyse

CARD_FILE = "card.yaml"
CARD_VERSION = 1
Task = Literal["detector", "ppe", "pose", "posture", "trajectory"]
ZOO_DIR = Path(__file__).resolve().parent.parent / "models"


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Card):
    name: str = Field(description="Tensor name in the ONNX graph.")
    shape: list[int | str] = Field(description="Shape; strings are symbolic (batch).")
    layout: str = Field(default="", description="NCHW, NC, NTC (batch, time, channels), ...")
    dtype: str = Field(default="float32", description="Element type.")


class Preprocess(_Card):
    """How the runtime turns its input into the model's input tensor."""

    color: Literal["rgb", "bgr", "none"] = Field(default="none", description="Channel order of image inputs.")
    crop: Literal["frame", "person"] = Field(
        default="frame", description="What an image input shows: the whole frame, or one person's box (cropped by the runtime).")
    resize: Literal["letterbox", "stretch", "crop", "none"] = Field(default="none", description="How frames are fitted.")
    mean: list[float] = Field(default_factory=list, description="Subtracted per channel after scaling.")
    std: list[float] = Field(default_factory=list, description="Divided per channel after the mean.")
    scale: float = Field(default=1.0, description="Multiplied first (e.g. 1/255).")
    rate_hz: float | None = Field(default=None, description="Sequence models: the sample rate the input must have.")
    notes: str = Field(default="", description="Anything else the runtime must do (e.g. relative coordinates).")


class Metric(_Card):
    name: str = Field(description="e.g. AP50, ADE_m, accuracy.")
    value: float = Field(description="The measured figure.")
    data: Literal["real", "synthetic"] = Field(description="Real footage/trajectories or sim scenes.")
    split: str = Field(description="Which held-out set, e.g. 'ethucy test (5 scenes, leave-one-out)'.")
    higher_is_better: bool = Field(default=True, description="Direction of the metric.")
    command: str = Field(default="", description="Command that measured it.")


class Training(_Card):
    command: str = Field(description="The command that trained this file; rerunning it reproduces it.")
    seed: int = Field(description="Random seed.")
    data: list[str] = Field(description="What it was trained on.")
    teacher: str | None = Field(default=None, description="Teacher model it was distilled from (None: no KD).")
    steps: int | None = Field(default=None, description="Optimiser steps.")
    seconds: float | None = Field(default=None, description="Wall time of the training run.")
    framework: str = Field(default="", description="e.g. torch 2.13.0.")


class Costs(_Card):
    params: int = Field(description="Parameter count.")
    macs: int = Field(description="Multiply-accumulates per inference (batch 1).")
    peak_activation_bytes: int = Field(description="Peak live activation memory (FP32), batch 1.")
    weight_bytes: int = Field(description="Bytes of weights in the file.")
    operators: dict[str, int] = Field(description="ONNX operator -> count.")
    opset: int = Field(description="ONNX opset.")
    max_rank: int = Field(description="Highest tensor rank.")


class ModelCard(_Card):
    card_version: int = Field(default=CARD_VERSION, description="Format version of this card.")
    task: Task = Field(description="What the model does.")
    variant: str = Field(description="Variant id, unique within the task (the folder name).")
    description: str = Field(description="One line for people.")
    file: str = Field(default="model.onnx", description="The ONNX file beside the card.")
    sha256: str = Field(description="sha256 of the file.")
    bytes: int = Field(description="Size of the file.")
    precision: Literal["fp32", "fp16", "int8"] = Field(default="fp32", description="Precision of the file.")
    quantize: bool = Field(default=True, description="Whether the builder should quantize it to INT8 (tiny MLPs may stay FP32).")
    inputs: list[TensorSpec] = Field(description="Model inputs.")
    outputs: list[TensorSpec] = Field(description="Model outputs.")
    preprocess: Preprocess = Field(default_factory=Preprocess, description="Input preparation.")
    decoder: str = Field(description="Runtime decoder kind that reads the outputs (runtime/ owns decoders).")
    classes: list[str] = Field(default_factory=list, description="Class names by index.")
    conditions: list[str] = Field(default_factory=lambda: ["any"], description="Conditions it is specialised for (any, night, rain, ...).")
    costs: Costs = Field(description="Measured from the ONNX file.")
    metrics: list[Metric] = Field(default_factory=list, description="Accuracy figures with their data and split.")
    training: Training = Field(description="How to reproduce the file.")
    notes: str = Field(default="", description="Caveats.")

    def metric(self, name: str, data: str | None = None) -> Metric | None:
        for m in self.metrics:
            if m.name == name and (data is None or m.data == data):
                return m
        return None


class ModelCardError(ValueError):
    """A card that is missing, malformed or disagrees with its file."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def costs_of(onnx_path: Path) -> Costs:
    info = analyse(onnx_path)
    return Costs(
        params=info.params, macs=info.macs, peak_activation_bytes=info.peak_activation_bytes,
        weight_bytes=info.weight_bytes, operators=info.operators, opset=info.opset, max_rank=info.max_rank,
    )


def write_card(card: ModelCard, folder: Path) -> Path:
    """Write `card.yaml` (only when its content changes) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CARD_FILE
    text = yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def read_card(folder: Path, verify: bool = True) -> ModelCard:
    path = Path(folder) / CARD_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        card = ModelCard.model_validate(data)
    except FileNotFoundError:
        raise ModelCardError(f"{path}: no model card") from None
    except (yaml.YAMLError, ValidationError) as e:
        raise ModelCardError(f"{path}: malformed card: {e}") from None
    if verify:
        f = Path(folder) / card.file
        if not f.is_file():
            raise ModelCardError(f"{path}: its file {card.file} is missing")
        digest = sha256_of(f)
        if digest != card.sha256:
            raise ModelCardError(f"{path}: sha256 of {card.file} is {digest[:12]}..., the card says {card.sha256[:12]}...")
    return card


def zoo(root: Path = ZOO_DIR, task: str | None = None, verify: bool = True) -> list[ModelCard]:
    """Every card under models/ (optionally one task), sorted by task and variant."""
    cards = []
    for card_path in sorted(Path(root).glob(f"{task or '*'}/*/{CARD_FILE}")):
        cards.append(read_card(card_path.parent, verify=verify))
    return cards
