"""The hooks a rocmforge plugin can implement (entry-point group ``rocmforge``).

Every hook receives a ``register`` callback instead of returning values (as in Simon Willison's llm): a plugin
calls it once per thing it provides. The registry records which plugin registered what, and calls each plugin's
hooks separately so that one plugin's failure never takes another down. Order of registration carries no meaning:
candidates are ranked explicitly (see ``Registry.kernels_for``). A function marked ``@hookimpl`` whose name is none
of the hooks below is a load error of its plugin (docs/PLUGINS.md, "What the registry refuses").
"""

import pluggy

hookspec = pluggy.HookspecMarker("rocmforge")
hookimpl = pluggy.HookimplMarker("rocmforge")


@hookspec
def register_backends(register):
    """Call ``register(backend)`` with a ``rocmforge_core.backend.Backend`` instance (not the class).

    Constructing a backend must be cheap and must not fail when its device runtime is absent: the backend reports
    that through ``available()``.
    """


@hookspec
def register_kernels(register):
    """Call ``register(kernel)`` with a ``rocmforge_core.ops.Kernel`` for each (op, backend) it implements.

    Kernel names are unique across all plugins: prefix them with the plugin's name."""


@hookspec
def register_formats(register):
    """Call ``register(fmt)`` with a ``rocmforge_core.formats.QuantFormat`` (one GGUF tensor type)."""


@hookspec
def register_architectures(register):
    """Call ``register(arch)`` with a ``rocmforge_core.models.Architecture`` (one ``general.architecture``)."""
