"""The serving engines' weight-loading functions, with the engines' exact call shapes, on stload.

One module per engine: :mod:`stload.integrations.vllm`, :mod:`stload.integrations.sglang`,
:mod:`stload.integrations.fastdeploy`. Each function takes the positional and keyword arguments
of the engine function it mirrors (same names, same defaults; an argument the engine does not
take is a TypeError) and yields ``(name, tensor)`` with the engine's tensor type: torch for vLLM
and SGLang, paddle for FastDeploy. The README's "Engines" table says which engine version each
one mirrors. Importing this package imports no engine and no framework.
"""

__all__ = ["fastdeploy", "sglang", "vllm"]
