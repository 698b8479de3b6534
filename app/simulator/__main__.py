"""``python -m app.simulator``: the ``simulate`` command without the ``persona`` group."""

from app.simulator.command import simulate

if __name__ == "__main__":
    simulate(prog_name="python -m app.simulator")
