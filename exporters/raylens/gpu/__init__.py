"""What the ``gpu`` collector (``raylens.collectors.gpu``, which keeps NVML's lifetime) is made of.

- ``nvml_codes``: NVML's ABI values and how its error codes are sorted.
- ``metric_specs``: every family the collector emits, with its HELP text and labels.
- ``device``: one GPU, and one NVML call on it with its failure sorted (unsupported, lost, NVML gone).
- ``readings`` and ``memory``: the devices section (utilisation, power, clocks, framebuffer, MIG, ECC).
- ``processes``: the processes section, each GPU process attributed to Ray (``attribution``).
- ``xid``: XID error events, counted by code.
- ``fake_nvml``: the fake NVML backend driven by fixture files (tests and demos only); ``record``: the
  fixture recorder for real cards.
"""
