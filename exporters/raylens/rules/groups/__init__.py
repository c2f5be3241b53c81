"""Alert groups, one module per area; `raylens.rules.definitions.GROUPS` lists them in order."""
