"""The live application: sources, pipeline, async generator, blend, sinks, controls, presets, config, its commands."""
