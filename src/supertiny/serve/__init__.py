"""OpenAI-compatible server for a (teacher or student) model: `supertiny serve`.

    python -m supertiny.serve --model student --port 8000
    # then any OpenAI client: base_url="http://127.0.0.1:8000/v1"

The HTTP side only; the models it serves are loaded and run by `runtime/` (the backends,
their registry `BACKENDS` in `runtime/backends.py`, grammars, and `ServerProcess`, which
the label and eval stages use to start this server in a child process).

- `server.py`: `serve()` (blocking; what the CLI verb calls), its options, and `main()`
  (`python -m supertiny.serve`, `__main__.py`);
- `app.py`: the HTTP layer (`POST /v1/chat/completions`, `GET /v1/models`, `GET /health`,
  `GET /metrics`); `chat.py`: the chat route's flow; `errors.py`: OpenAI-style errors;
  `metrics.py`: its Prometheus counters;
- `limits.py`: `Limits`, what one request may ask for and how many run at once;
  `admission.py`: the bounded running set and queue, deadlines, stopping generations whose
  client has gone; `auth.py`: the Bearer API key;
- `protocol.py`: the request model and its normalisation for chat templates;
- `profile.py`: a task's student prompt format, applied to requests (`--task`);
- `responses.py`: generated text -> OpenAI `chat.completion` objects and chunks.
"""
