"""Table definitions and the pure state logic behind them, each with merge and erase hooks."""
