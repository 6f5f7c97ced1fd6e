"""Network digital twin: many stations run plant-only, serially or as tasks on a Dask cluster.

- :mod:`host.fleet.network`: the network file (TOML/JSON) and its validation; station specs.
- :mod:`host.fleet.generate`: synthetic networks (default: NIO scale, 2,855 stations).
- :mod:`host.fleet.runner`: one station's run, and the serial and ``dask.distributed`` backends.
- :mod:`host.fleet.packs`: every pack tracked across stations and days (``--packs``).
- :mod:`host.fleet.report`: network and per-station KPIs, Parquet/CSV table, plots, table.
- :mod:`host.fleet.cli`: ``swapstation fleet``.

Nothing here imports dask at module level except inside the Dask backend, so ``swapstation
--version`` and the other subcommands never load it.
"""
