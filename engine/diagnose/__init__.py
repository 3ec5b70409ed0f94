"""Diagnose why an engagement's impressions are low, from its counters and changelog (pure)."""

from engine.diagnose.causes import Verdict
from engine.diagnose.render import render_ranking, render_text
from engine.diagnose.report import Report, build_report, shortfall

__all__ = ["Report", "Verdict", "build_report", "render_ranking", "render_text", "shortfall"]
