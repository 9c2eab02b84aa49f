"""Model architectures. Each one is a plugin (``register_architectures``) that knows its GGUF tensor names and
writes the forward pass once against the ops, through ``rocmforge_core.engine.forward.Forward``: every backend
runs the same model code, only the kernels differ.
"""

from __future__ import annotations


class Architecture:
    """One ``general.architecture``.

    ``global_tensors`` and ``layer_tensors`` (with ``{i}`` for the layer index) name the tensors the model needs;
    ``optional_tensors`` those it uses when present. ``hidden(f)`` computes the final hidden states (after the
    output norm) of ``f``'s batch rows that ``f.output_rows`` selects, ``head(f, x)`` their logits; ``forward(f)``
    is both (embeddings use ``hidden`` alone). Layer i's attention is the call site ``blk.{i}.attn``: the engine keeps that layer's
    KV cache on the backend the site runs on.
    """
    name = ""
    plugin = ""  # filled in by the registry
    global_tensors: tuple[str, ...] = ()
    layer_tensors: tuple[str, ...] = ()
    optional_tensors: tuple[str, ...] = ()

    def required_tensors(self, config) -> list[str]:
        names = list(self.global_tensors)
        for i in range(config.n_layers):
            names += [t.format(i=i) for t in self.layer_tensors]
        return names

    def forward(self, f):
        return self.head(f, self.hidden(f))

    def hidden(self, f):
        raise NotImplementedError

    def head(self, f, x):
        raise NotImplementedError
