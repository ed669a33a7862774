"""The lab: real data sets, the demo, and the policies' offline evaluation (not installed).

Everything here reads the data sets (Fashion-MNIST from Debian's package, the
sentiment sentences from npm, BBC News from PyPI), which no tier needs, so it
stays out of the ``splitexit`` package and the serving image.
"""
