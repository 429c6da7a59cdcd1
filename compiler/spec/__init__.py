"""The site-spec language: pydantic models (one module per section), the loader that reports
every error as file:line:col, and the cross-field checks."""
from .loader import LoadResult, SpecError, load_spec
from .root import SiteSpec

__all__ = ["LoadResult", "SiteSpec", "SpecError", "load_spec"]
