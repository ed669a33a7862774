"""splitexit: early-exit inference split across device, edge and cloud.

Subpackages: :mod:`splitexit.device`, :mod:`splitexit.edge` and
:mod:`splitexit.cloud` (one tier each), :mod:`splitexit.shared` (the tier
runtime they share) and :mod:`splitexit.policies` (the exit policies, pure
Python). The modules at this level are the user-facing side: the ``splitexit``
command line, the client, the testbeds (three local processes on loopback or in network
namespaces) and the load generator.
"""
