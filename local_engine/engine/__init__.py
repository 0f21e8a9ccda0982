"""The engine: sequences, scheduler, model runner, `LLMEngine` and its threaded `AsyncEngine`."""
