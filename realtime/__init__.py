"""ipmcam live pipeline: sources, face tracking, alignment, masks, blending, sinks, CLI."""
