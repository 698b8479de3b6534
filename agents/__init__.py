"""Faust agents, one module per pipeline stage. They only wire topics, tables and pure functions."""
