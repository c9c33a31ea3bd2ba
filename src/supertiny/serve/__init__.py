"""OpenAI-compatible server for a (teacher or student) model: `supertiny serve`.

    python -m supertiny.serve --model student --port 8000
    # then any OpenAI client: base_url="http://127.0.0.1:8000/v1"

- `server.py`: `serve()` (blocking; what the CLI verb calls) and the `BACKENDS` registry;
- `app.py`: the HTTP layer (`POST /v1/chat/completions`, `GET /v1/models`, `GET /health`,
  `GET /metrics`); `chat.py`: the chat route's flow; `errors.py`: OpenAI-style errors;
  `metrics.py`: its Prometheus counters;
- `limits.py`: `Limits`, what one request may ask for and how many run at once;
  `admission.py`: the bounded running set and queue, deadlines, stopping generations whose
  client has gone; `auth.py`: the Bearer API key;
- `protocol.py`: the request model and its normalisation for chat templates;
- `profile.py`: a task's student prompt format, applied to requests (`--task`);
- `responses.py`: generated text -> OpenAI `chat.completion` objects and chunks;
- `backend.py`: the `Backend` interface every model runtime implements;
- `llamacpp.py`: the llama.cpp backend (GGUF in process); `grammar.py`: its GBNF grammars;
- `torch_backend.py` + `torch_sampling.py`: the PyTorch backend (checkpoint folders, request
  batching, xgrammar-constrained decoding);
- `process.py`: `ServerProcess`, a server in a subprocess for the other stages
  (the label stage starts the teacher this way).
"""

from supertiny.serve.process import ServerProcess, ServerStartError
from supertiny.serve.server import BACKENDS, serve

__all__ = ["BACKENDS", "ServerProcess", "ServerStartError", "serve"]
