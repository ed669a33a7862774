"""splitexit: early-exit inference split across device, edge and cloud.

This package is the user-facing side: the ``splitexit`` command line, the
client, the local three-process testbed and the demo. The tiers themselves live
in ``device/``, ``edge/`` and ``cloud/``, and what they share in ``shared/``.
"""
