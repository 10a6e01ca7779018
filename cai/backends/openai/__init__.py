"""The backend for OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp server, transformers serve...)."""
