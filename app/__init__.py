"""persona-stream: the Faust application, its settings, CLI, web views and the embedded stack."""
