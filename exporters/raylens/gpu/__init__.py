"""What the ``gpu`` collector stands on: NVML access helpers, the fake NVML backend driven by fixture
files (tests and demos only), the fixture recorder for real cards, and the attribution of GPU
processes to Ray jobs, actors and tasks."""
