"""Stage 1: the teacher — an LLM behind an OpenAI-compatible endpoint that labels the task."""
