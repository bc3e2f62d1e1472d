"""The umbrella command `voltstack`: runs the whole stack on one machine.

It starts the other parts (simulators, agents, cloud) as they land and an
embedded MQTT broker; it imports none of their internals, so the rooms'
import rules (docs/architecture.md) hold.
"""

from importlib.metadata import version

__version__ = version("voltstack")
__all__ = ["__version__"]
