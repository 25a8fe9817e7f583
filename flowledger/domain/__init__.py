"""The pure domain: definitions, references, conditions, lifecycles, the Execution aggregate."""
