"""`models:` which zoo variants (or which of your own ONNX models) each task runs."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import SpecModel

Prefer = Literal["accuracy", "balanced", "speed"]
Task = Literal["detector", "ppe", "pose", "posture", "trajectory"]
TASKS: tuple[str, ...] = ("detector", "ppe", "pose", "posture", "trajectory")
DecoderKind = Literal["sitewarden", "yolov8", "ssd"]
DetectorClass = Literal["person", "machine", "ignore"]


class CustomModel(SpecModel):
    """Your own detector ONNX, with its output layout and class mapping."""

    onnx: str = Field(description="Path to your own ONNX file, relative to the spec.")
    decoder: DecoderKind = Field(
        description="Output layout: sitewarden (our students), yolov8 ([1, 4+nc, N], also YOLO11) or ssd (boxes + scores)."
    )
    classes: dict[int, DetectorClass] = Field(
        description="Model class index -> sitewarden class (person, machine or ignore), e.g. {0: person, 7: machine}."
    )
    input_size: tuple[int, int] | None = Field(
        default=None, description="[width, height] when the ONNX input is dynamic."
    )

    @field_validator("classes")
    @classmethod
    def _maps_person(cls, v: dict[int, str]) -> dict[int, str]:
        if "person" not in v.values():
            raise ValueError("no class maps to person; the safety rules need people, e.g. {0: person}")
        return v


class TaskModel(SpecModel):
    """One task's choice: exactly one of variant, prefer or custom."""

    variant: str | None = Field(default=None, description="A zoo variant id (see models/<task>/), pinned.")
    prefer: Prefer | None = Field(default=None, description="Let the planner choose, leaning to accuracy, balance or speed.")
    custom: CustomModel | None = Field(default=None, description="Your own ONNX model instead of the zoo's (detector only).")

    @model_validator(mode="after")
    def _one_choice(self):
        given = [k for k in ("variant", "prefer", "custom") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"choose exactly one of variant, prefer or custom (have: {', '.join(given) or 'none'})")
        return self


class Models(SpecModel):
    """Which models run: a default trade-off, and per-task choices."""

    prefer: Prefer = Field(default="balanced", description="Default trade-off for every task.")
    detector: TaskModel | None = Field(default=None, description="Person/machine detector choice.")
    ppe: TaskModel | None = Field(default=None, description="Helmet/vest classifier choice.")
    pose: TaskModel | None = Field(default=None, description="Keypoint model choice.")
    posture: TaskModel | None = Field(default=None, description="Single-frame posture classifier choice.")
    trajectory: TaskModel | None = Field(default=None, description="Path forecaster choice.")

    @model_validator(mode="after")
    def _custom_only_detector(self):
        for task in ("ppe", "pose", "posture", "trajectory"):
            choice = getattr(self, task)
            if choice is not None and choice.custom is not None:
                raise ValueError(f"{task}: your own ONNX is supported for the detector only; pick a zoo variant or prefer")
        return self


class ModelOverride(SpecModel):
    """The part of `models:` a situation may change."""

    prefer: Prefer | None = Field(default=None, description="Trade-off while the situation holds.")
    detector: TaskModel | None = Field(default=None, description="Detector while the situation holds.")
    ppe: TaskModel | None = Field(default=None, description="PPE classifier while the situation holds.")
    pose: TaskModel | None = Field(default=None, description="Pose model while the situation holds.")
