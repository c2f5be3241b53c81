"""Sample Ray workloads for `raylens up --demo`: jobs with metadata for two projects and three users."""
