"""The station simulator: the real firmware in virtual time over the plant.

- :mod:`host.sim.scenario`: scenario files (TOML/JSON), their validation and the built-ins
  (``scenarios/``).
- :mod:`host.sim.engine`: the virtual-time loop that runs the firmware against the plant.
- :mod:`host.sim.buses`: the simulator's field buses (``direct`` and ``wire``).
- :mod:`host.sim.kpi`, :mod:`host.sim.report`: KPIs, their series and the run's report.
- :mod:`host.sim.queueing`: the closed forms the simulator is validated against.
- :mod:`host.sim.cli`: ``swapstation sim``.

Nothing here is imported by the package itself, so the other subcommands never load it.
"""
