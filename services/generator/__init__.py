"""Generator worker: builds the grounded prompt and generates with a vLLM engine."""
