"""``cai serve``: regional layers behind one OpenAI-compatible router.

* :mod:`cai.serve.routing`: the routing table (YAML, validated with one line per error) and the pure
  :func:`~cai.serve.routing.pick_layer` that chooses a layer from a request's user context;
* :mod:`cai.serve.router`: the ASGI app (starlette + httpx2) that forwards each request, streaming
  too, to the engine of the chosen layer and marks the answer with ``X-Cai-Layer``;
* :mod:`cai.serve.run`: the engines (one ``transformers serve`` per layer, or one vLLM with every
  adapter), started through :class:`~cai.engines.manager.EngineManager`, then the router under
  uvicorn until SIGTERM/SIGINT.
"""
