"""Model converters and references for wiki-image-topics (no torch needed except for export_timm)."""
