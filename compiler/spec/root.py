"""The whole site spec: one field per section, each section in its own module."""
from __future__ import annotations

from pydantic import Field

from .alerts import Alerts
from .base import SpecModel
from .cameras import Camera
from .devices import Device
from .models import Models
from .rules import ActionRule, HealthRule, PPERule
from .site import Defaults, Site
from .situations import Situation


class SiteSpec(SpecModel):
    """A construction site: cameras, zones, rules, alerts and model choices."""

    site: Site = Field(description="Name and time zone of the site.")
    defaults: Defaults = Field(default_factory=Defaults, description="Values cameras and devices inherit.")
    cameras: list[Camera] = Field(min_length=1, description="The site's cameras.")
    devices: list[Device] = Field(default_factory=list, description="Edge boxes that serve several cameras.")
    ppe: list[PPERule] = Field(default_factory=list, description="Hard-hat and hi-vis rules.")
    actions: list[ActionRule] = Field(default_factory=list, description="Posture rules, e.g. fallen.")
    health: list[HealthRule] = Field(
        default_factory=lambda: [HealthRule()],
        description="Camera-health checks; by default every check on every camera.",
    )
    alerts: Alerts = Field(default_factory=Alerts, description="Cooldown and sinks.")
    models: Models = Field(default_factory=Models, description="Model choices per task.")
    situations: list[Situation] = Field(default_factory=list, description="When to switch model preference.")

    def zone_ids(self) -> list[str]:
        return [z.id for c in self.cameras for z in c.zones]
