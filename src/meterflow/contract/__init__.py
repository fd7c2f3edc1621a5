"""The contract between the parts (design §1-§2, §6) as code, one small module per concern.

Between the pure core (`models`, `tariffs`, `costing`, `ids`) and the adapters (`stream`,
`sink`, `api`, `cli`): every adapter reads topic names, message keys, the decision on each input
message and the database columns from here, so two processes can never disagree about them. It
imports the core only: no faust, mode, aiokafka, aiohttp nor asyncpg, so the API and the sink
can use it without loading the stream processor (`tests/unit/test_architecture.py`).

- `topics`: topic names and their cleanup policy.
- `keys`: message keys (`locations` by location id, `market-prices` by `{series_id}/{day}`).
- `decisions`: the typed outcome of reading one input message (apply, delete, reject).
- `locations`, `market_prices`: the one decision function per input topic.
- `columns`: the PostgreSQL columns of `energy_costs`, its breakdown and the locations mirror.
- `clock`: the wall clock the adapters pass into the core.

The dead-letter builder and the ValidationError summary live in the core (`models.errors`):
the pricing path builds dead letters itself and the core imports nothing above it.
"""
