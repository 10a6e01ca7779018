"""Managed inference servers: launch command lines per engine kind, the server process, and a manager.

* :mod:`cai.engines.commands`: one pure argv builder per kind (vLLM, SGLang, llama.cpp's
  ``llama-server``, ``transformers serve``) and the user's extra ``args``;
* :mod:`cai.engines.process`: one server on a free loopback port, health-checked on ``/v1/models``,
  logged, stopped with its whole process group, never orphaned (:mod:`cai.engines.watchdog`);
* :mod:`cai.engines.manager`: servers across a run's stages, reused while the checkpoint is the
  same, each reached through an ``openai`` :class:`~cai.backends.spec.BackendSpec`.
"""
