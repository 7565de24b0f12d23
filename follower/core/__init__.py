"""The pure core: synchronous functions and objects over values, no I/O and no clock of their
own (time comes in as `now`). The differ and its fast paths (`differ`, `tailshape`), a pod's and
a pipeline's diff state (`tracker`, `pending`), tail errors (`tail_errors`), the events
(`events`, `batch`, `model`, `enrich`), when to poll (`schedule`, `budget`, `pace`), what a
failure means (`lifecycle`, `backoff`) and what to follow (`selection`, `sharding`).
tests/test_layout.py holds it pure."""
