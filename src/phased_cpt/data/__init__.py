"""Training data, pure functions on plain types plus an on-disk cache: `jsonl` (reading and
validating records), `split` (eval documents), `chunking`, `packing`, `rows` (rows as views into
one token array), `spec` (what shapes an entry: `DataSpec`, and its cache key), `encoder` (the
tokenizer or the byte estimate), `prepare` (one entry's pipeline), `cache` (also the one-writer
protocol of a multi-process run), `phase_data` (the entry point:
`build_run_data`), `collate` (batches for the Trainer) and `plan` (the per-phase plan table)."""
