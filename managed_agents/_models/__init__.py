"""Typed models at every boundary: workflow inputs, events, session object, activity I/O."""
