"""The backend for OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp server, transformers serve...).

:mod:`~cai.backends.openai.backend` holds :class:`~cai.backends.openai.backend.OpenAIBackend` and its request
plumbing, :mod:`~cai.backends.openai.logprobs` the pure log-prob readers, :mod:`~cai.backends.openai.urls`
base URL checks and the round robin over several servers.
"""
