"""The composition root: the `hwq` command, `hwq up` and the processes it starts.

It may import every other package of hwq; none of them imports it.
"""
