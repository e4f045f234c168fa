"""Training data, pure functions on plain types plus an on-disk cache: `jsonl` (reading and
validating records), `split` (eval documents), `chunking`, `packing`, `rows` (rows as views into
one token array), `prepare` (one phase's pipeline), `cache`, `phase_data` (the entry point:
`build_run_data`), `collate` (batches for the Trainer) and `plan` (the per-phase plan table)."""
