"""Training data: reading JSONL documents, tokenizing, chunking, and building each phase's rows."""
