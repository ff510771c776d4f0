"""statement-bench: statement-tuned encoders vs generative LLMs, zero-shot, multilingual."""

__version__ = "0.1.0"
